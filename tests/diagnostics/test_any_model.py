"""`check` on models that are not BERT-style text encoders (issue 14), from
tests/builders/onnx_corpus.py.

A representative subset: ViT healthy and frozen four ways, a Whisper encoder, GPT-2
with past key values, wav2vec2, CLIP text, T5, GLiNER's whole span model. The whole
corpus runs in benchmarks/bench_corpus.py.
"""

from __future__ import annotations

import json

import pytest
from builders import onnx_corpus

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
    from diagnostics.repair.plan import repair

    source = corpus("vit", "python-ints")
    refused = repair(source, tmp_path / "no_dummy.onnx")
    assert refused.refusals and "--dummy batch=N,height=N,width=N" in refused.refusals[0].reason
    assert refused.output is None and list(tmp_path.iterdir()) == []  # not proved: not written
    entry = onnx_corpus.entry("vit", "python-ints")
    repaired = repair(source, tmp_path / "repaired.onnx", dummy=entry.dummy)
    assert repaired.ok and len(repaired.changes) == 8, repaired.refusals
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "repaired.onnx"),
                                   providers=["CPUExecutionProvider"])
    for sizes in entry.trials:  # the dummy, then batch 1 and 3 at other image sizes
        out = session.run(None, onnx_corpus.feeds("vit", sizes))[0]
        assert out.shape[0] == sizes["batch"]


def test_a_repair_of_a_batch_one_export_that_mixes_rows_writes_nothing(corpus, tmp_path):
    from diagnostics.repair.plan import BATCH_OF_ONE, repair

    source = corpus("vit", "dummy-batch-1")
    dummy = onnx_corpus.entry("vit", "dummy-batch-1").dummy
    report = repair(source, tmp_path / "out.onnx", dummy=dummy)
    assert len(report.findings) == 8 and report.changes and not report.ok
    # Rebuilt, it runs at batch 3 but a row alone no longer gives what it gives in the batch.
    failures = report.verification.failures
    assert failures and all("batch invariance fails" in f for f in failures), failures
    assert report.output is None and BATCH_OF_ONE in report.notes
    assert list(tmp_path.iterdir()) == []
    healthy = repair(corpus("vit", "healthy-torchscript"), tmp_path / "clean.onnx")
    assert healthy.ok and healthy.output is None and "nothing to repair" in healthy.notes[-1]


def test_a_repair_that_fails_verification_is_written_only_when_asked(corpus, tmp_path, capsys):
    source = str(corpus("t5-encoder", "static-inputs"))  # relative positions folded at 7x7
    out = tmp_path / "t5.onnx"
    args = ["repair", source, "-o", str(out), "--dummy", "batch=2,sequence=7", "--json"]
    assert main(args) == EXIT_FAILED
    data = json.loads(capsys.readouterr().out)
    assert data["output"] is None and data["refusals"] and list(tmp_path.iterdir()) == []
    # j - i and a bucket limit are rebuilt; the bidirectional bucket (0 below the diagonal,
    # 16 above) is a step function of j - i, which no Range sum writes.
    changes = {c["node"].rsplit("/", 1)[-1]: c["after"] for c in data["changes"]}
    assert changes["Abs"] == "-1*i0 + i1 over [sequence, sequence]"
    assert changes["Min"] == "15 expanded to [sequence, sequence]"
    assert "is not start + step * index" in data["refusals"][0]["reason"]
    assert main([*args, "--keep-failed"]) == EXIT_FAILED
    data = json.loads(capsys.readouterr().out)
    assert data["output"] == str(out) and out.is_file()
    assert any("do not ship it" in note for note in data["notes"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t5.onnx"]  # no staged leftovers


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


def test_expect_turns_a_silently_specialised_export_into_findings(corpus, capsys):
    """torch.export made height and width static (a square dummy at the checkpoint's size):
    nothing in the graph tells it from a fixed-size design, the user's expectation does."""
    from diagnostics.analysis.signature import parse_expect

    source = corpus("vit", "dynamo-specialised")
    assert check(source).verdict == "clean"  # the graph alone: a fixed 30x30 model
    expect = parse_expect("pixel_values[batch,3,height,width]")
    report = check(source, expect=expect)
    (static,) = [f for f in report.findings if f.kind == "static-input"]
    assert [(v.position, v.value, v.symbol) for v in static.frozen] == [
        (2, 30, "height"), (3, 30, "width")]
    assert "torch.export" in static.reason
    # Analysed as symbols, the sizes derived from them show where the 30s were baked in.
    reshapes = [f for f in report.findings if f.op_type == "Reshape"]
    assert len(reshapes) == 9 and {v.value for f in reshapes for v in f.frozen} == {25, 26}
    # A healthy export meets the same expectation; a wrong name or rank is a finding.
    assert check(corpus("vit", "healthy-dynamo"), expect=expect).verdict == "clean"
    wrong = check(corpus("vit", "healthy-dynamo"),
                  expect=parse_expect("pixel[batch];pixel_values[batch,3,30]"))
    assert sorted(f.reason.split(":")[1].split("(")[0].strip() for f in wrong.findings) == [
        "no such input", "rank 4 ['batch', 3, 'height', 'width'], expected 3 ['batch', 3, 30]"]
    assert main(["check", str(source), "--expect", "pixel_values[batch,3,height"]) == 2
    assert capsys.readouterr().err.startswith("error: bad --expect")


def test_probe_sizes_respect_what_the_graph_says_of_them(corpus):
    """No sizes given: wav2vec2's convolutions need more than 16 samples (grown until every
    derived size is at least 1), CLIP text slices a 64-row position table by the sequence
    (the long run is capped), GPT-2 reshapes input_ids before its 99-row embedding (ids drawn
    below it) and its position table is indexed past 64 (retried at half the sizes)."""
    source = corpus("wav2vec2", "healthy-torchscript")
    wav2vec2 = check(source, probe=True)
    assert wav2vec2.verdict == "clean" and wav2vec2.probe.failures == 0
    samples = [dict(r.sizes)["samples"] for r in wav2vec2.probe.runs]
    assert min(samples) == 32, samples  # doubled once from 16, which is too short:
    short = check(source, probe=True, probe_shapes=[{"batch": 2, "samples": 16}])
    assert short.probe.runs[0].node.endswith("conv/Conv")
    assert short.probe.inconclusive and short.verdict == "incomplete"  # not the model's fault
    clip = check(corpus("clip-text", "healthy-torchscript"), probe=True)
    assert clip.verdict == "clean" and max(r.sequence for r in clip.probe.runs) == 64
    past = check(corpus("gpt2-past", "healthy-torchscript"), probe=True)
    assert past.verdict == "clean", past.probe
    assert any(r.note and "past the end of /model/wpe/Gather" in r.note for r in past.probe.runs)


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


# -- GLiNER's whole model: its export's inputs, axes and batch-1 dummy --------------------------

GLINER_DUMMY = "batch_size=1,sequence_length=14,num_spans=28,value=1,idx=2"  # the file's names


def _feeds_on_disk(tmp_path, trials):
    import numpy as np

    paths = []
    for index, sizes in enumerate(trials):
        paths.append(str(tmp_path / f"inputs{index}.npz"))
        np.savez(paths[-1], **onnx_corpus.feeds("gliner", sizes))
    return paths


def test_gliner_healthy_is_clean_given_its_dummy_and_runs_on_its_own_inputs(corpus, tmp_path,
                                                                             capsys):
    source = str(corpus("gliner", "healthy-torchscript"))
    # Its words and spans are sized by text_lengths.max(), a value: the span Reshapes are
    # judged only against export sizes, which GLiNER's file does not record.
    alone = check(source, probe=True)
    assert alone.verdict == "incomplete" and {s.node for s in alone.skipped} == {
        "/Reshape_11", "/Reshape_12"}
    # Built inputs cannot agree with each other (num_spans = words x width): inconclusive,
    # not a failure.
    assert alone.probe.inconclusive and alone.probe.failures == 0
    entry = onnx_corpus.entry("gliner", "healthy-torchscript")
    inputs = _feeds_on_disk(tmp_path, entry.trials)
    args = ["check", source, "--dummy", GLINER_DUMMY, "--inputs", ",".join(inputs), "--json"]
    assert main(args) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "clean" and [r["ok"] for r in data["probe"]] == [True] * 3
    assert [r["batch"] for r in data["probe"]] == [1, 1, 3] and len(data["invariance"]) == 2
    import numpy as np

    np.savez(tmp_path / "partial.npz", input_ids=np.ones((1, 14), np.int64))
    assert main(["check", source, "--inputs", str(tmp_path / "partial.npz")]) == 2
    assert capsys.readouterr().err.startswith("error: --inputs partial.npz: arrays ['input_ids']")


def test_gliner_with_python_ints_is_repaired_on_its_own_inputs(corpus, tmp_path):
    import onnxruntime as ort
    import torch

    from diagnostics.repair.plan import repair

    source = corpus("gliner", "python-ints")  # DeBERTa's split with int(x.size(i)), batch 1
    entry = onnx_corpus.entry("gliner", "python-ints")
    inputs = [onnx_corpus.feeds("gliner", sizes) for sizes in entry.trials]
    built = repair(source, tmp_path / "no_inputs.onnx", dummy=entry.dummy)
    assert not built.ok and built.output is None  # nothing to verify it on: not written
    report = repair(source, tmp_path / "fixed.onnx", dummy=entry.dummy, inputs=inputs)
    assert report.ok and len(report.changes) == 12, report.verification.failures
    session = ort.InferenceSession(str(tmp_path / "fixed.onnx"), providers=["CPUExecutionProvider"])
    model = onnx_corpus.reference("gliner")
    for feed in inputs:  # batch 1 at 14 and 20 tokens, batch 3 at 11
        with torch.no_grad():
            (want,) = model(*(torch.from_numpy(v) for v in feed.values()))
        got = session.run(None, feed)[0]
        assert abs(got - want.numpy()).max() < 1e-4


def test_external_data_model_whose_head_reads_like_text_is_an_onnx_model(tmp_path):
    """bert-base exported by TorchScript with external data opens with ir_version, the
    producer, a graph length whose varint bytes happen to be valid UTF-8 (cb 9e 10) and
    then input names: its first 4 KB passed for text, and compare refused the model."""
    from diagnostics.file_kinds import describe

    names = b"".join(b"\n\x1fmodel.embeddings.LayerNorm.bias" for _ in range(150))
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x08\x12\x07pytorch\x1a\x062.13.0:\xcb\x9e\x10\n\x52" + names)
    assert describe(path) == "an ONNX model"
