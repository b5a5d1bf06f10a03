"""`check` on models that are not BERT-style text encoders (issue 14), from tests/onnx_corpus.py.

A representative subset: ViT healthy and frozen three ways, a Whisper encoder, GPT-2
with past key values. The whole corpus runs in benchmarks/bench_corpus.py.
"""

from __future__ import annotations

import json

import onnx_corpus
import pytest

from diagnostics import check
from diagnostics.__main__ import EXIT_FAILED, EXIT_INCOMPLETE, EXIT_OK, main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    return lambda model, variant: onnx_corpus.build(model, variant, directory)


@pytest.mark.parametrize("model", ["vit", "whisper-encoder", "gpt2-past", "wav2vec2"])
def test_healthy_exports_are_clean_and_every_symbol_is_named(corpus, model):
    entry = onnx_corpus.entry(model, "healthy-torchscript")
    # The probe at the corpus's sizes: the dummy, then batch 1 and 3 at other sizes.
    report = check(corpus(model, "healthy-torchscript"), probe=True, probe_shapes=entry.trials)
    assert report.verdict == "clean", (report.findings, report.skipped, report.probe)
    assert not report.unhandled_ops
    shown = "; ".join(f"{t.name}[{', '.join(map(str, t.dims))}]" for t in report.inputs)
    assert shown == entry.inputs
    assert report.probe.runs and report.probe.failures == 0, report.probe


@pytest.mark.parametrize("model", ["vit", "wav2vec2", "gpt2"])
def test_dynamo_exports_are_clean_where_sizes_are_computed_two_ways(corpus, model):
    # dynamo computes a conv's output length as `samples // 10 - 1` and a ViT's patch grid
    # as `height // 6`: the same sizes the Conv rules derive, recognised as one symbol.
    report = check(corpus(model, "healthy-dynamo"))
    assert report.verdict == "clean", (report.findings, report.skipped)


def test_repair_rebuilds_a_vits_frozen_attention_given_the_export_dummy(corpus, tmp_path):
    from diagnostics.repairer import repair

    source = corpus("vit", "python-ints")
    refused = repair(source, tmp_path / "no_dummy.onnx")
    assert refused.refusals and "--dummy batch=N,height=N,width=N" in refused.refusals[0].reason
    entry = onnx_corpus.entry("vit", "python-ints")
    repaired = repair(source, tmp_path / "repaired.onnx", dummy=entry.dummy)
    assert repaired.ok and len(repaired.changes) == 8, repaired.refusals
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "repaired.onnx"),
                                   providers=["CPUExecutionProvider"])
    for sizes in entry.trials:  # the dummy, then batch 1 and 3 at other image sizes
        out = session.run(None, onnx_corpus.feeds("vit", sizes))[0]
        assert out.shape[0] == sizes["batch"]


def test_vit_with_python_ints_is_flagged_at_the_attention_reshapes(corpus):
    report = check(corpus("vit", "python-ints"), probe=True)
    assert report.verdict == "findings"
    nodes = {f.node for f in report.findings}
    assert {f"/model/layers.{i}/attention/Reshape_{j}" for i in (0, 1) for j in (3, 4, 5)} <= nodes
    # The head size (12) is the model's own: never reported as frozen.
    assert all(12 not in [v.value for v in f.frozen] for f in report.findings)
    assert report.probe.failures > 0


def test_fully_static_vit_is_a_static_input_finding_with_its_cause(corpus):
    report = check(corpus("vit", "static-inputs"))
    static = [f for f in report.findings if f.kind == "static-input"]
    assert [f.node for f in static] == ["pixel_values"]
    assert static[0].frozen[0].value == 2 and "every input is static" in static[0].reason
    assert report.dummy == {"batch": 2}


def test_static_models_that_do_not_come_from_pytorch_are_not_flagged(tmp_path):
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    shape = numpy_helper.from_array(np.array([4, 6], dtype=np.int64), "shape")
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [2, 3, 4])],
                              [helper.make_tensor_value_info("y", 1, [4, 6])], [shape])
    path = tmp_path / "static.onnx"
    onnx.save(helper.make_model(graph, producer_name="backend-test"), str(path))
    assert check(path).verdict == "clean"


def test_exit_codes_tell_clean_findings_and_incomplete_apart(corpus, tmp_path, capsys):
    assert main(["check", str(corpus("vit", "healthy-torchscript"))]) == EXIT_OK
    assert "no frozen shapes found" in capsys.readouterr().out
    assert main(["check", str(corpus("vit", "python-ints")), "--json"]) == EXIT_FAILED
    assert json.loads(capsys.readouterr().out)["verdict"] == "findings"
    # A Reshape after a Loop: its data shape cannot be followed, so it is not judged.
    import onnx
    from onnx import helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["x_in"], ["x_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [helper.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", 1, None)],
        [helper.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", 1, None)])
    nodes = [
        helper.make_node("Constant", [], ["trips"], value=helper.make_tensor("t", 7, [], [1])),
        helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("c", 9, [], [1])),
        helper.make_node("Loop", ["trips", "cond", "x"], ["looped"], body=body),
        helper.make_node("Constant", [], ["target"],
                         value=helper.make_tensor("s", 7, [3], [2, 8, 16])),
        helper.make_node("Reshape", ["looped", "target"], ["y"], name="frozen_or_not"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", 1, ["batch", "sequence", 16])],
        [helper.make_tensor_value_info("y", 1, None)])
    path = tmp_path / "loop.onnx"
    onnx.save(helper.make_model(graph, producer_name="pytorch",
                                opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert main(["check", str(path), "--json"]) == EXIT_INCOMPLETE
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "incomplete" and data["unhandled_ops"] == {"Loop": 1}
    assert [s["node"] for s in data["skipped"]] == ["frozen_or_not"]
