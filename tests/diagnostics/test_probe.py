"""--probe: the shape matrix, errors linked to findings, batch invariance."""

from __future__ import annotations

import io

from rich.console import Console

from diagnostics import check
from diagnostics.__main__ import EXIT_FAILED, EXIT_OK, main
from diagnostics.probe.run import default_shapes, parse_shapes
from diagnostics.report import render_check


def test_default_shapes_include_the_dummy_batch_one_and_a_long_one():
    shapes = default_shapes({"batch": 3, "sequence": 17})
    assert shapes[0] == (3, 17)
    assert (1, 17) in shapes and any(s >= 128 for _, s in shapes)


def test_parse_shapes():
    assert parse_shapes("1x8, 4X128") == [(1, 8), (4, 128)]


def test_healthy_model_passes_every_shape_and_invariance(extracted):
    report = check(extracted("torchscript"), probe=True)
    assert report.probe is not None
    failed = [run for run in report.probe.runs if not run.ok]
    assert not failed and len(report.probe.runs) == 6, (
        f"expected 6 shapes, each running, saw {len(report.probe.runs)}; failed: {failed}")
    # Rows agree with their batch within the probe's 1e-4 / 1e-3, far above any CPU's
    # last-bit differences between batch sizes.
    off = [run for run in report.probe.invariance if not run.ok]
    assert report.probe.invariance and not off, f"expected batch invariance, saw {off}"
    assert report.ok


def test_loud_failures_name_the_node_and_link_the_finding(tiny):
    report = check(tiny("attention-ints"), probe=True, probe_shapes=[(2, 8), (1, 34)])
    dummy, other = report.probe.runs
    assert dummy.ok
    assert not other.ok
    assert other.node in {
        "/model/encoder/layer.0/attention/self/Reshape",
        "/model/encoder/layer.0/attention/self/Reshape_1",
        "/model/encoder/layer.0/attention/self/Reshape_2",
    }
    assert "requested shape:{2,8,4,16}" in other.error
    assert report.findings[other.finding].node == other.node


def test_silent_minus_one_form_runs_but_mixes_rows(tiny):
    report = check(tiny("attention-ints-minus-one"), probe=True, probe_shapes=[(2, 8), (1, 8)])
    failed = [run for run in report.probe.runs if not run.ok]
    assert not failed, f"expected no error at all, saw {failed}"  # no error at all...
    assert report.probe.invariance and not any(r.ok for r in report.probe.invariance)
    assert report.probe.invariance[0].max_abs > 1e-3  # ...but a row alone differs


def test_static_inputs_fail_on_input_dims_and_link_the_static_finding(tiny):
    report = check(tiny("static-inputs"), probe=True, probe_shapes=[(1, 8)])
    run = report.probe.runs[0]
    assert not run.ok and run.node == "input_ids"
    assert report.findings[run.finding].kind == "static-input"


def test_probe_matrix_renders_and_sets_the_exit_code(tiny, extracted, capsys):
    assert main(["check", str(extracted("dynamo")), "--probe", "1x5,2x40"]) == EXIT_OK
    assert main(["check", str(tiny("position-ids-int")), "--probe", "2x8,1x34"]) == EXIT_FAILED
    console = Console(file=io.StringIO(), width=200)
    render_check(console, check(tiny("position-ids-int"), probe=True, probe_shapes=[(1, 34)]))
    text = console.file.getvalue()
    assert "1x34" in text and "FAIL" in text
    assert "/model/embeddings/Add_1" in text  # the node onnxruntime names
    assert "#0 /model/embeddings/position_embeddings/Gather" in text  # linked finding
