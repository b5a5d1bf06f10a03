"""Padding: sentences/second on 512 sentences of 8-128 tokens, input order vs length-sorted.

    python -m benchmarks.bench_padding [--threads 2] [--file model.onnx] [--workdir DIR]

Extracts bert-base (random weights; speed does not depend on them) as bench_speed.py
does, then encodes the same 512 sentences (token ids of lengths drawn uniformly
from 8 to 128, seed 0) in batches of 32 with `extractor.encode.encode_ids`
through the graft (`OnnxEncoder`), once in input order (each batch padded to its
longest sentence) and once sorted by length, and checks that both give every
sentence the same embeddings.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--file", default="model.onnx")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="subgraft-padding-"))
    out = workdir / "out"
    if not (out / args.file).is_file():
        from bench_speed import make_checkpoint

        checkpoint, _ = make_checkpoint(workdir)
        flags = ["--quantize", "int8"] if "int8" in args.file else []
        subprocess.run([sys.executable, "-m", "extractor", str(checkpoint), "--prefix", "bert.",
                        "-o", str(out), "--force", *flags], cwd=ROOT, check=True,
                       capture_output=True)

    import numpy as np
    import torch

    from extractor.encode import encode_ids
    from extractor.graft import OnnxEncoder

    torch.set_num_threads(args.threads)
    encoder = OnnxEncoder(out, args.file, threads=args.threads)
    rng = np.random.default_rng(0)
    vocab = encoder.config.vocab_size
    ids = [[101, *rng.integers(1000, vocab, int(n) - 2).tolist(), 102]
           for n in rng.integers(8, 129, 512)]
    real = sum(map(len, ids))
    encode_ids(encoder, ids[:32], 32)  # warm-up
    results, rates = {}, {}
    for label, sort in (("input order (padded)", False), ("length-sorted", True)):
        start = time.perf_counter()
        results[label] = encode_ids(encoder, ids, batch_size=32, sort_by_length=sort)
        seconds = time.perf_counter() - start
        batches = [sorted(map(len, ids))[i:i + 32] if sort else list(map(len, ids[i:i + 32]))
                   for i in range(0, len(ids), 32)]
        computed = sum(max(b) * len(b) for b in batches)
        rates[label] = len(ids) / seconds
        print(f"{label:22} {seconds:6.1f} s  {rates[label]:6.1f} sentences/s  "
              f"tokens computed {computed} for {real} real ({computed / real:.2f}x)")
    worst = max(float((a - b).abs().max()) for a, b in zip(*results.values(), strict=True))
    ratio = rates["length-sorted"] / rates["input order (padded)"]
    print(f"length-sorted / input order: {ratio:.2f}x sentences/s; "
          f"largest difference between the two: {worst:.1e}")


if __name__ == "__main__":
    main()
