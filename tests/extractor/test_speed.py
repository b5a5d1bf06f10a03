"""bench's figures: quartiles, per-turn speed-ups, warnings, and how idle threads wait.

Fed synthetic per-turn times, so the contract is checked without timing anything;
the CLI's JSON is checked in test_cli and test_tiers. Speed is never asserted.
"""

from __future__ import annotations

import io
import os

import pytest
from rich.console import Console

from extractor.bench.peers import PYTORCH_FP32, Engine
from extractor.bench.speed import (
    PYTORCH,
    SPREAD_LIMIT,
    busy_warnings,
    quartiles,
    shape_timings,
)
from extractor.errors import ExtractorError
from extractor.report import render_peers, render_speed
from extractor.tiers.accuracy import Agreement
from extractor.tiers.runtimes import checked_session, with_thread_wait

# Five turns of four runs: PyTorch about 30 ms, the file about 10 ms.
STEADY = {PYTORCH: [[30.0, 30.2, 29.9, 30.1]] * 5, "model.onnx": [[10.0, 10.1, 9.9, 10.0]] * 5}
CONDITIONS = {"cpu": "Test CPU", "cpu_flags": ["avx2"], "cores": 2, "threads": 2,
              "thread_wait": "passive: test", "other_processes_cores": 0.02,
              "load_average_before": 0.1, "load_average_after": 0.2, "warnings": []}


def test_quartiles_are_ordered_and_a_single_sample_is_its_own_spread():
    spread = quartiles([5.0, 1.0, 3.0, 2.0, 40.0])
    assert spread.p25 <= spread.median <= spread.p75
    assert (spread.p25, spread.median, spread.p75) == (2.0, 3.0, 5.0)
    one = quartiles([7.0])
    assert (one.p25, one.median, one.p75) == (7.0, 7.0, 7.0)


def test_steady_samples_give_each_figure_its_spread_and_no_warning():
    timings = shape_timings(STEADY, PYTORCH, 1, 16, CONDITIONS)
    base, onnx = timings
    assert (base.model, base.speedup, base.speedup_p25, base.speedup_p75) == (PYTORCH, 1, 1, 1)
    assert onnx.ms_p25 <= onnx.ms <= onnx.ms_p75 and onnx.runs == 20
    assert onnx.speedup_p25 <= onnx.speedup <= onnx.speedup_p75
    assert onnx.speedup == pytest.approx(3.0, rel=0.02)
    assert all(t.warnings == () and t.conditions["cpu"] == "Test CPU" for t in timings)


def test_one_slow_turn_of_pytorch_warns_on_the_ratio_with_its_numbers():
    # A busy neighbour took PyTorch's cores in two turns of five: 3x reads as up to 30x.
    noisy = {PYTORCH: [[30.0] * 4, [300.0] * 4, [30.0] * 4, [300.0] * 4, [31.0] * 4],
             "model.onnx": [[10.0] * 4] * 5}
    base, onnx = shape_timings(noisy, PYTORCH, 8, 128)
    assert onnx.speedup_p25 <= onnx.speedup <= onnx.speedup_p75
    assert (onnx.speedup_p25, onnx.speedup_p75) == (3.0, 30.0)
    assert any("8x128 model.onnx: speed-up over the turns 3.00-30.00x" in w
               for w in onnx.warnings)
    assert any(w.startswith("8x128 PyTorch eager: times 30.0-300.0 ms") for w in onnx.warnings)
    assert base.warnings and all("noise, not speed" in w for w in base.warnings)


def test_a_spread_just_under_the_limit_is_not_flagged():
    half = SPREAD_LIMIT / 2 * 0.9  # quartiles at 1 -/+ this: their gap is 0.9 of the limit
    turns = {PYTORCH: [[1 - half, 1 - half, 1 + half, 1 + half]] * 5,
             "model.onnx": [[0.5]] * 5}
    assert all(t.warnings == () for t in shape_timings(turns, PYTORCH, 1, 8))


def test_a_busy_machine_warns_on_every_figure():
    busy = busy_warnings(others=1.3, load=3.4, cores=2, threads=2)
    assert busy == ["other processes kept 1.30 of the 2 cores busy while this timed (0 left "
                    "free by 2 threads; 1-min load average 3.40): every ratio here is suspect"]
    timings = shape_timings(STEADY, PYTORCH, 1, 16, {**CONDITIONS, "warnings": busy})
    assert all(t.warnings == tuple(busy) for t in timings)


def test_busy_cores_the_threads_leave_free_are_no_competition():
    assert busy_warnings(others=0.1, load=0.5, cores=2, threads=2) == []
    assert busy_warnings(others=1.5, load=1.5, cores=4, threads=2) == []
    assert busy_warnings(others=2.5, load=2.5, cores=4, threads=2) != []


def test_without_a_busy_measure_the_load_average_warns():
    assert busy_warnings(others=None, load=1.0, cores=2, threads=2) == []
    [line] = busy_warnings(others=None, load=4.5, cores=2, threads=2)
    assert "1-min load average 4.50 on 2 cores" in line


def test_more_threads_than_cores_warns():
    assert busy_warnings(others=0.0, load=0.0, cores=2, threads=4) == [
        "4 threads on 2 cores: the threads take turns"]


def test_the_speed_table_shows_each_range_the_cpu_and_the_warnings():
    noisy = {PYTORCH: [[30.0] * 4, [300.0] * 4, [30.0] * 4, [300.0] * 4, [31.0] * 4],
             "model.onnx": [[10.0] * 4] * 5}
    timings = [*shape_timings(STEADY, PYTORCH, 1, 16, CONDITIONS),
               *shape_timings(noisy, PYTORCH, 8, 128, CONDITIONS)]
    console = Console(file=io.StringIO(), width=100)
    render_speed(console, timings, threads=2)
    text = console.file.getvalue()
    assert "10.0 (10.0-10.0)" in text and "3.00x (3.00-3.00)" in text
    assert "3.10x (3.00-30.00) !" in text
    assert "CPU: Test CPU (avx2 int8-relevant flags), 2 cores, 2 threads" in text
    assert "warning: 8x128 model.onnx: speed-up over the turns 3.00-30.00x" in text
    assert text.count("warning:") == 2  # PyTorch's once, though both of its figures carry it


def test_the_peers_table_shows_the_range_of_each_timed_engine():
    timings = {t.model: t for t in shape_timings(
        {PYTORCH_FP32: STEADY[PYTORCH], "onnxruntime model.onnx": STEADY["model.onnx"]},
        PYTORCH_FP32, 1, 16, CONDITIONS)}
    agreement = Agreement("x", 1.0, 1.0, 1.0, 1.0, 12, 0.0, "exact")
    found = [Engine(name, "exact", name != PYTORCH_FP32, agreement=agreement,
                    ms={(1, 16): t.ms}, timings={(1, 16): t}) for name, t in timings.items()]
    found.append(Engine("OpenVINO f32 on model.onnx", "exact", False,
                        unavailable="OpenVINO is not installed: [pip] install it"))
    console = Console(file=io.StringIO(), width=160)
    render_peers(console, found, threads=2)
    text = console.file.getvalue()
    assert "10.0 (10.0-10.0)" in text and "3.00x (3.00-3.00)" in text and "CPU: Test CPU" in text
    assert "OpenVINO is not installed: [pip] install it" in text
    assert found[0].to_dict()["timings"]["1x16"]["speedup_p75"] == 1.0


def test_threads_wait_passively_in_a_fresh_interpreter_when_openmp_already_started(
        monkeypatch):
    import torch  # noqa: F401  (OpenMP is loaded: its wait policy can no longer change here)

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert with_thread_wait(False, os.getenv, "OMP_WAIT_POLICY") == "PASSIVE"
    assert with_thread_wait(False, os.getpid) != os.getpid()
    assert with_thread_wait(True, os.getpid) == os.getpid()  # the policy it started with
    assert "OMP_WAIT_POLICY" not in os.environ


def test_an_input_error_in_the_fresh_interpreter_is_raised_here(tmp_path):
    with pytest.raises(ExtractorError, match="nope.onnx"):
        with_thread_wait(False, checked_session, tmp_path / "nope.onnx")
