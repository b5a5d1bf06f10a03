"""Time an extractor output on CPU: PyTorch eager against every ONNX model beside it.

Every model runs the same inputs with the same thread count; each ratio is against
PyTorch timed in the same run, so figures from different machines are never mixed.
The models take turns, in a rotated order, so a slow minute of a shared machine
falls on all of them alike. Each turn starts with a quarter second of untimed runs:
the previous model's weights fill the caches (an int8 bert-base at 1x16 takes ten
runs to come back to speed). Idle threads wait alike: by default both runtimes
spin a while, then sleep (their defaults, said explicitly: OMP_WAIT_POLICY unset,
onnxruntime's allow_spinning=1), which is what a user's own process gets and
costs neither its speed; asleep at once (`spinning=False`) is steadier beside
other busy processes but slows PyTorch eager more than onnxruntime (its many
small parallel regions each wake a thread), so every speed-up reads higher.

Each time is the median of its timed runs, with their quartiles; each speed-up is
the median of the per-turn ratios (PyTorch and the model timed in the same turn: a
paired sample), with their quartiles. A figure whose quartiles lie more than a
quarter of it apart, or a run during which other processes took cores the threads
wanted, carries a warning that says so in numbers, and every run names its CPU.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..tiers.runtimes import cpu_flags, openmp_runtime, openmp_wait_policy

SHAPES = ((1, 128), (8, 128), (1, 16))
PYTORCH = "PyTorch eager"
ROUNDS = 5
SETTLE_S = 0.25  # untimed running at the start of each turn
ONNX_FILES = ("model.onnx", "model.optimized.onnx", "model.int8.onnx")
# Quartiles further apart than this part of the median are the machine's noise: on a
# quiet 2-core machine every figure of MiniLM's bench lay within 12%, beside one busy
# process the flagged ones lay 26% to 116% apart.
SPREAD_LIMIT = 0.25
# Cores other processes may keep busy beyond those the threads leave free: quiet, the
# measure reads 0.0; one busy process reads 0.6 to 0.8 and PyTorch's times at least double.
BUSY_LIMIT = 0.25
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class Spread:
    """The median of some samples and their quartiles."""

    p25: float
    median: float
    p75: float

    @property
    def relative(self) -> float:
        """The interquartile range over the median."""
        return (self.p75 - self.p25) / self.median if self.median else math.inf


@dataclass(frozen=True)
class Timing:
    model: str
    batch: int
    sequence: int
    ms: float  # median of the timed runs
    ms_p25: float
    ms_p75: float
    speedup: float  # median over the turns of PyTorch eager's ms / this one's, same turn
    speedup_p25: float
    speedup_p75: float
    runs: int
    warnings: tuple[str, ...] = ()  # why this figure or its ratio is not to be trusted
    conditions: dict[str, Any] = field(default_factory=dict, compare=False)  # CPU, load, waits


def benchmark(directory: str | Path, threads: int = 2, runs: int = 20,
              shapes: tuple[tuple[int, int], ...] = SHAPES,
              extra: dict[str, Path] | None = None, spinning: bool = True) -> list[Timing]:
    """Time the Hugging Face model in `directory` and its ONNX files (plus `extra`).

    Args:
        spinning: idle threads of both runtimes spin a while before they sleep (their
            defaults); False: they sleep at once (OMP_WAIT_POLICY=PASSIVE, no onnxruntime
            spinning). Either way they wait alike; where this process's OpenMP already
            started with the other policy, the timing runs in a fresh interpreter
            (`runtimes.with_thread_wait`).
    """
    from ..tiers.runtimes import with_thread_wait

    return with_thread_wait(spinning, _benchmark_here, Path(directory), threads, runs,
                            tuple(shapes), dict(extra or {}), spinning)


def _benchmark_here(directory: Path, threads: int, runs: int,
                    shapes: tuple[tuple[int, int], ...], extra: dict[str, Path],
                    spinning: bool) -> list[Timing]:
    import torch

    from ..resolve.model import load_saved_model
    from ..tiers.runtimes import checked_session, session_options

    torch.set_num_threads(threads)
    model = load_saved_model(directory)
    options = session_options(threads, spinning)
    files = {name: directory / name for name in ONNX_FILES if (directory / name).is_file()}
    files.update(extra)
    sessions = {name: checked_session(path, options) for name, path in files.items()}
    vocab = model.config.vocab_size
    turns = []
    watch = BusyWatch()
    for batch, sequence in shapes:
        feeds = random_inputs(batch, sequence, vocab)
        runners = {PYTORCH: _pytorch_runner(model, feeds)}
        for name, session in sessions.items():
            wanted = {i.name for i in session.get_inputs()}
            feed = {k: v for k, v in feeds.items() if k in wanted}
            runners[name] = lambda s=session, f=feed: s.run(None, f)
        turns.append((batch, sequence, interleaved_times(runners, max(5, runs // batch))))
    conditions = run_conditions(threads, spinning, watch.others())
    return [timing for batch, sequence, times in turns
            for timing in shape_timings(times, PYTORCH, batch, sequence, conditions)]


def _pytorch_runner(model: Any, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
    import torch

    from ..export_inputs import input_names_for

    tensors = {k: torch.from_numpy(feeds[k]) for k in input_names_for(model)}

    def run() -> object:
        with torch.inference_mode():
            return model(**tensors)

    return run


def interleaved_medians(runners: dict[str, Callable[[], object]], repeats: int
                         ) -> dict[str, float]:
    """Median ms of each runner over `repeats` timed runs spread across ROUNDS turns."""
    return {name: statistics.median(ms for turn in turns for ms in turn)
            for name, turns in interleaved_times(runners, repeats).items()}


def interleaved_times(runners: dict[str, Callable[[], object]], repeats: int
                      ) -> dict[str, list[list[float]]]:
    """Each runner's timed runs (ms), turn by turn: `repeats` runs across ROUNDS turns."""
    times: dict[str, list[list[float]]] = {name: [] for name in runners}
    names = list(runners)
    per_turn = max(1, -(-repeats // ROUNDS))
    for turn in range(ROUNDS):
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            settled = time.perf_counter() + SETTLE_S
            runners[name]()
            while time.perf_counter() < settled:
                runners[name]()
            turn_ms = []
            for _ in range(per_turn):
                start = time.perf_counter()
                runners[name]()
                turn_ms.append((time.perf_counter() - start) * 1000)
            times[name].append(turn_ms)
    return times


def quartiles(samples: Sequence[float]) -> Spread:
    values = sorted(samples)
    if len(values) < 2:
        return Spread(values[0], values[0], values[0])
    p25, _, p75 = statistics.quantiles(values, n=4, method="inclusive")
    return Spread(p25, statistics.median(values), p75)


def shape_timings(turns: dict[str, list[list[float]]], base: str, batch: int, sequence: int,
                  conditions: dict[str, Any] | None = None) -> list[Timing]:
    """Each runner's figures at one shape from its per-turn times, its speed-up against `base`.

    A figure's warnings: its times' spread, the base's (its ratio rests on both), the
    spread of its per-turn ratios, and the run's own (`conditions["warnings"]`).
    """
    conditions = conditions or {}
    shape = f"{batch}x{sequence}"
    times = {name: quartiles([ms for turn in per_turn for ms in turn])
             for name, per_turn in turns.items()}
    base_turns = [statistics.median(turn) for turn in turns[base]]
    noisy = {name: spread_warning(f"{shape} {name}", "times", spread, "ms")
             for name, spread in times.items()}
    timings = []
    for name, per_turn in turns.items():
        ratios = quartiles([b / statistics.median(turn)
                            for b, turn in zip(base_turns, per_turn, strict=True)])
        warnings = [noisy[name]] if name == base else [
            noisy[name], noisy[base], spread_warning(f"{shape} {name}", "speed-up over the turns",
                                                     ratios, "x")]
        warnings += conditions.get("warnings", [])
        spread = times[name]
        timings.append(Timing(name, batch, sequence, spread.median, spread.p25, spread.p75,
                              ratios.median, ratios.p25, ratios.p75,
                              sum(len(turn) for turn in per_turn),
                              tuple(w for w in warnings if w), conditions))
    return timings


def spread_warning(label: str, what: str, spread: Spread, unit: str) -> str | None:
    """A line when the quartiles lie more than SPREAD_LIMIT of the median apart, else None."""
    if spread.relative <= SPREAD_LIMIT:
        return None
    digits, unit = (2, "x") if unit == "x" else (1, f" {unit}")
    return (f"{label}: {what} {spread.p25:.{digits}f}-{spread.p75:.{digits}f}{unit} around "
            f"{spread.median:.{digits}f}{unit}, quartiles {spread.relative:.0%} of it apart "
            f"(over {SPREAD_LIMIT:.0%}): noise, not speed")


def busy_warnings(others: float | None, load: float | None, cores: int, threads: int
                  ) -> list[str]:
    """Lines when the machine was not the threads' own: other processes' busy cores while
    timing (None: not measured; then the load average before), or more threads than cores."""
    warnings = []
    if threads > cores:
        warnings.append(f"{threads} threads on {cores} cores: the threads take turns")
    free = max(0, cores - threads)
    if others is not None and others > free + BUSY_LIMIT:
        warnings.append(
            f"other processes kept {others:.2f} of the {cores} cores busy while this timed "
            f"({free} left free by {threads} threads; 1-min load average "
            f"{'-' if load is None else f'{load:.2f}'}): every ratio here is suspect")
    elif others is None and load is not None and load > cores:
        warnings.append(f"1-min load average {load:.2f} on {cores} cores before timing: other "
                        f"processes competed with the {threads} threads")
    return warnings


class BusyWatch:
    """How many cores other processes kept busy since it was made (Linux /proc/stat: the
    busy time, steal included, of the CPUs this process may run on, less its own)."""

    def __init__(self) -> None:
        self.load = _load_average()
        self.start = _busy_seconds()

    def others(self) -> dict[str, Any]:
        end = _busy_seconds()
        cores = len(_cpus())
        measured = None
        if self.start and end and end[0] > self.start[0]:
            wall, busy, own = (b - a for a, b in zip(self.start, end, strict=True))
            measured = round(max(0.0, (busy - own) / wall), 2)
        return {"cores": cores, "other_processes_cores": measured,
                "load_average_before": self.load, "load_average_after": _load_average()}


def _cpus() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def _busy_seconds() -> tuple[float, float, float] | None:
    """(wall, busy seconds of this process's CPUs, this process's own CPU seconds), or None."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    cpus = {f"cpu{i}" for i in _cpus()}
    ticks = 0
    for line in lines:
        name, *fields = line.split() or [""]
        if name in cpus:  # user nice system idle iowait irq softirq steal ...
            values = [int(v) for v in fields[:8]]
            ticks += sum(values) - values[3] - values[4]
    import resource  # Unix only, as /proc is

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (time.monotonic(), ticks / os.sysconf("SC_CLK_TCK"),
            usage.ru_utime + usage.ru_stime)


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run_conditions(threads: int, spinning: bool, busy: dict[str, Any]) -> dict[str, Any]:
    """What the figures were measured under: CPU, cores, load, how idle threads waited."""
    import onnxruntime
    import torch

    flags = cpu_flags()
    policy = openmp_wait_policy(spinning)
    openmp = openmp_runtime() or "OpenMP"
    wait = (f"{'spin a while, then sleep' if spinning else 'sleep at once'}: PyTorch's "
            f"{openmp} started with OMP_WAIT_POLICY="
            f"{os.environ.get('OMP_WAIT_POLICY') or 'unset'}, onnxruntime with "
            f"session.intra_op.allow_spinning={int(spinning)}")
    if (os.environ.get("OMP_WAIT_POLICY") or "").upper() != (policy or ""):
        wait += f" (wanted OMP_WAIT_POLICY={policy or 'unset'}: not in effect)"
    return {"cpu": cpu_name(), "cpu_flags": [f for f in INT8_FLAGS if f in flags],
            "threads": threads, "thread_wait": wait, **busy,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "warnings": busy_warnings(busy["other_processes_cores"],
                                      busy["load_average_before"], busy["cores"], threads)}


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; the platform's processor elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


def random_inputs(batch: int, sequence: int, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"input_ids": rng.integers(5, vocab, (batch, sequence)),
            "attention_mask": np.ones((batch, sequence), dtype=np.int64),
            "token_type_ids": np.zeros((batch, sequence), dtype=np.int64)}
