"""Time an extractor output on CPU: PyTorch eager against every ONNX model beside it.

Every model runs the same inputs with the same thread count; each ratio is against
PyTorch timed in the same run, so figures from different machines are never mixed.
The models take turns, in a rotated order, so a slow minute of a shared machine
falls on all of them alike. Each turn starts with a quarter second of untimed runs:
the previous model's threads are still spinning and its weights fill the caches
(an int8 bert-base at 1x16 takes ten runs to come back to speed). Each figure is
the median of all its timed runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .export import input_names_for

SHAPES = ((1, 128), (8, 128), (1, 16))
PYTORCH = "PyTorch eager"
ROUNDS = 5
SETTLE_S = 0.25  # untimed running at the start of each turn
ONNX_FILES = ("model.onnx", "model.optimized.onnx", "model.int8.onnx")


@dataclass(frozen=True)
class Timing:
    model: str
    batch: int
    sequence: int
    ms: float
    speedup: float  # PyTorch eager's median / this one's, same run


def benchmark(directory: str | Path, threads: int = 2, runs: int = 20,
              shapes: tuple[tuple[int, int], ...] = SHAPES,
              extra: dict[str, Path] | None = None) -> list[Timing]:
    """Time the Hugging Face model in `directory` and its ONNX files (plus `extra`)."""
    import onnxruntime as ort
    import torch

    from .model import load_saved_model
    from .runtimes import checked_session

    directory = Path(directory)
    torch.set_num_threads(threads)
    model = load_saved_model(directory)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    files = {name: directory / name for name in ONNX_FILES if (directory / name).is_file()}
    files.update(extra or {})
    sessions = {name: checked_session(path, options) for name, path in files.items()}
    vocab = model.config.vocab_size
    timings = []
    for batch, sequence in shapes:
        feeds = random_inputs(batch, sequence, vocab)
        runners = {PYTORCH: _pytorch_runner(model, feeds)}
        for name, session in sessions.items():
            wanted = {i.name for i in session.get_inputs()}
            feed = {k: v for k, v in feeds.items() if k in wanted}
            runners[name] = lambda s=session, f=feed: s.run(None, f)
        medians = interleaved_medians(runners, max(5, runs // batch))
        base = medians[PYTORCH]
        timings.extend(Timing(name, batch, sequence, ms, base / ms)
                       for name, ms in medians.items())
    return timings


def _pytorch_runner(model: Any, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
    import torch

    tensors = {k: torch.from_numpy(feeds[k]) for k in input_names_for(model)}

    def run() -> object:
        with torch.inference_mode():
            return model(**tensors)

    return run


def interleaved_medians(runners: dict[str, Callable[[], object]], repeats: int
                         ) -> dict[str, float]:
    """Median ms of each runner over `repeats` timed runs spread across ROUNDS turns."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    per_turn = max(1, -(-repeats // ROUNDS))
    for turn in range(ROUNDS):
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            settled = time.perf_counter() + SETTLE_S
            runners[name]()
            while time.perf_counter() < settled:
                runners[name]()
            for _ in range(per_turn):
                start = time.perf_counter()
                runners[name]()
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(times[name]) for name in names}


def random_inputs(batch: int, sequence: int, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"input_ids": rng.integers(5, vocab, (batch, sequence)),
            "attention_mask": np.ones((batch, sequence), dtype=np.int64),
            "token_type_ids": np.zeros((batch, sequence), dtype=np.int64)}
