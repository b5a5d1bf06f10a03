"""A failed parity check names the first divergent module, in the failure line, in
report.json and (with --keep-failed) in compare.json; a comparison that cannot run is
one line beside the original failure, never a crash.

The failing case is real: Funnel exported by the TorchScript exporter computes its
relative-position index from Python ints (`pos = list(range(seq_len))`), so the trace
freezes a [2 x 17, 1] index built for the dummy's 17 tokens, and parity fails at every
other length.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
from pathlib import Path

import pytest
from builders.tiny_encoders import composite_checkpoint

from extractor.__main__ import EXIT_FAILED, main

FUNNEL_ATTENTION = "encoder.blocks.0.0.attention"


def _extract(directory: Path, capsys) -> tuple[int, str, Path]:
    path, _ = composite_checkpoint(directory, "funnel")
    out = directory / "out"
    code = main([str(path), "-o", str(out), "--exporter", "torchscript", "--keep-failed"])
    return code, capsys.readouterr().out, directory / "out.failed"


@pytest.fixture(scope="module")
def funnel(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    directory = tmp_path_factory.mktemp("funnel")
    path, _ = composite_checkpoint(directory, "funnel")
    printed = io.StringIO()  # module scope has no capsys
    with contextlib.redirect_stdout(printed):
        code = main([str(path), "-o", str(directory / "out"), "--exporter", "torchscript",
                     "--keep-failed"])
    return code, printed.getvalue(), directory / "out.failed"


def test_failure_line_names_the_first_divergent_module(funnel):
    code, printed, _ = funnel
    assert code == EXIT_FAILED
    line = " ".join(printed.split())  # rich wraps the one line at the console width
    assert "verification failed: 5 of 5 comparisons" in line
    assert f"first divergent module: {FUNNEL_ATTENTION} (FunnelRelMultiheadAttention" in line
    assert "2 x the dummy's sequence 17" in line


def test_report_json_and_kept_compare_json_name_the_module_and_cause(funnel):
    _, _, kept = funnel
    report = json.loads((kept / "report.json").read_text())
    first = report["first_divergence"]
    assert first["module"] == FUNNEL_ATTENTION and report["first_divergence_error"] is None
    assert first["input_max_abs"] < 1e-5 < first["max_abs"]  # it starts here, not upstream
    assert "of shape [34, 1]" in first["cause"]  # the relative-position index, for 17 tokens
    assert "compare.json" in report["files"]
    kept_compare = json.loads((kept / "compare.json").read_text())
    assert kept_compare["first_divergence"] == first and not kept_compare["ok"]
    assert kept_compare["runs"] == ["1x9"]  # the first failing parity case's shape


def test_a_comparison_that_fails_keeps_the_original_failure(tmp_path, capsys, monkeypatch):
    judge = importlib.import_module("diagnostics.compare.judge")  # `diagnostics.compare` is
    # also the lazily exported function, so `import ... as` would resolve the wrong name

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(judge, "compare", broken)
    code, printed, kept = _extract(tmp_path, capsys)
    assert code == EXIT_FAILED
    line = " ".join(printed.split())
    assert "verification failed: 5 of 5 comparisons" in line
    assert "module comparison could not run (RuntimeError: boom)" in line
    report = json.loads((kept / "report.json").read_text())
    assert report["first_divergence"] is None
    assert report["first_divergence_error"] == "RuntimeError: boom"
    assert not (kept / "compare.json").exists()
