"""python -m diagnostics repair: exit codes 0/1/2, --dry-run, --json, one-line errors, rendering."""

from __future__ import annotations

import io
import json

from rich.console import Console

from diagnostics import repair
from diagnostics.__main__ import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from diagnostics.report import render_repair


def test_repairable_model_exits_0_and_prints_before_after(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "fixed.onnx"
    assert main(["repair", str(tiny("position-ids-int")), "-o", str(out)]) == EXIT_OK
    text = capsys.readouterr().out
    assert "repaired and verified" in text
    assert "arange(0, 8, 1)" in text and "1x34" in text
    assert out.is_file()


def test_refusals_exit_1_and_json_names_them(tiny, tmp_path, capsys):
    args = ["repair", str(tiny("dynamo-ints")), "-o", str(tmp_path / "f.onnx"), "--json"]
    assert main(args) == EXIT_FAILED
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert {r["node"] for r in data["refusals"]} >= {"node_add_1", "node_GatherND_38"}
    assert data["verification"]["failures"]


def test_dry_run_writes_nothing(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "fixed.onnx"
    assert main(["repair", str(tiny("attention-ints")), "-o", str(out), "--dry-run"]) == EXIT_OK
    assert "dry run, nothing written" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "missing.onnx"
    assert main(["repair", str(missing), "-o", str(tmp_path / "x.onnx")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_missing_output_and_overwriting_the_input_are_usage_errors(tiny, capsys):
    path = str(tiny("attention-ints"))
    assert main(["repair", path]) == EXIT_USAGE
    assert "-o" in capsys.readouterr().err
    assert main(["repair", path, "-o", path]) == EXIT_USAGE
    assert "overwrite the input" in capsys.readouterr().err


def test_rendering_shows_refusals_and_rebuilt_targets(tiny):
    report = repair(tiny("dynamo-ints"), dry_run=True)
    console = Console(file=io.StringIO(), width=160)
    render_repair(console, report)
    text = console.file.getvalue()
    assert "[batch, sequence, 4, 16]" in text  # escaped, not eaten as markup
    assert "refused" in text and "node_GatherND_38" in text


def test_repair_without_output_shows_that_o_is_required(tiny, capsys):
    assert main(["repair", str(tiny("attention-ints"))]) == EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "usage: python -m diagnostics repair MODEL (-o OUTPUT | --dry-run) [options]",
        "error: python -m diagnostics repair: give -o OUTPUT for the repaired model, or "
        "--dry-run to only show the plan",
    ], lines
