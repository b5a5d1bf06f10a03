"""Time an extractor output on CPU: PyTorch eager against every ONNX model beside it.

Every model runs the same inputs with the same thread count; each figure is the
median of repeated runs after warm-up, and each ratio is against PyTorch timed
in the same run, so figures from different machines are never mixed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .export import input_names_for

SHAPES = ((1, 128), (8, 128), (1, 16))
PYTORCH = "PyTorch eager"
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
    from transformers import AutoModel

    directory = Path(directory)
    torch.set_num_threads(threads)
    model = AutoModel.from_pretrained(directory, local_files_only=True).eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    files = {name: directory / name for name in ONNX_FILES if (directory / name).is_file()}
    files.update(extra or {})
    sessions = {name: ort.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
                for name, path in files.items()}
    vocab = model.config.vocab_size
    timings = []
    for batch, sequence in shapes:
        repeats = max(5, runs // batch)
        feeds = _inputs(batch, sequence, vocab)
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(feeds[k]) for k in input_names_for(model)}
            base = _median_ms(lambda t=tensors: model(**t), repeats)
        timings.append(Timing(PYTORCH, batch, sequence, base, 1.0))
        for name, session in sessions.items():
            wanted = {i.name for i in session.get_inputs()}
            feed = {k: v for k, v in feeds.items() if k in wanted}
            ms = _median_ms(lambda s=session, f=feed: s.run(None, f), repeats)
            timings.append(Timing(name, batch, sequence, ms, base / ms))
    return timings


def _inputs(batch: int, sequence: int, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"input_ids": rng.integers(5, vocab, (batch, sequence)),
            "attention_mask": np.ones((batch, sequence), dtype=np.int64),
            "token_type_ids": np.zeros((batch, sequence), dtype=np.int64)}


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
