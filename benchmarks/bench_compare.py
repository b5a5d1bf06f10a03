"""Benchmark `diagnostics compare` on a bert-base-sized model: peak RSS against 3x its weights.

    python -m benchmarks.bench_compare [--exporter torchscript|dynamo] [--runs 3]
                                       [--shapes 4x128] [--keep DIR]

Builds a random-weight bert-base (hidden 768, 12 layers, 12 heads) from its config in a
child process, saves it as a Hugging Face directory (the reference) and exports it once
with the extractor's `export_onnx` (weights in external data), then runs `python -m
diagnostics compare MODEL --reference DIR --json` (at `--shapes`, default compare's own
2x13) in a fresh child `--runs` times and
reports each child's peak RSS (its own ru_maxrss) and wall time: the median and the
range. Target: peak RSS under 3x the weights' bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
TARGET_TIMES_WEIGHTS = 3.0
BERT_BASE = dict(
    vocab_size=30522,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=512,
    type_vocab_size=2,
)


def build(directory: Path, exporter: str) -> None:
    import torch
    from transformers import BertConfig, BertModel

    from extractor.export import export_onnx

    torch.manual_seed(0)
    model = BertModel(BertConfig(**BERT_BASE)).eval()
    model.save_pretrained(directory / "reference")
    (directory / "onnx").mkdir(parents=True, exist_ok=True)
    export_onnx(model, directory / "onnx" / "model.onnx", exporter=exporter,
                external_data=True)


def measure(model: Path, reference: Path, shapes: str | None
            ) -> dict[str, float | int | str | None]:
    """One compare in a child process; its own ru_maxrss is the peak RSS."""
    script = (
        "import contextlib, io, resource, sys, time\n"
        "start = time.perf_counter()\n"
        "from diagnostics.__main__ import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    code = main(['compare', sys.argv[1], '--reference', sys.argv[2], '--json', "
        "*sys.argv[3:]])\n"
        "elapsed = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(out.getvalue())\n"
        "print(f'BENCH {elapsed:.3f} {peak:.1f} {code}', file=sys.stderr)\n"
    )
    extra = ["--shapes", shapes] if shapes else []
    done = subprocess.run([sys.executable, "-c", script, str(model), str(reference), *extra],
                          cwd=REPO, capture_output=True, text=True, check=False)
    line = next((x for x in done.stderr.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise SystemExit(f"compare failed: {done.stderr.strip()[-2000:]}")
    _, seconds, peak, code = line.split()
    report = json.loads(done.stdout)
    first = report["first_divergence"]
    return {"seconds": float(seconds), "peak_rss_mb": float(peak), "exit_code": int(code),
            "modules_aligned": len(report["modules"]),
            "first_divergence": first["module"] if first else None}


def main() -> int:
    from extractor.bench.speed import cpu_name

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shapes", help="BATCHxSEQUENCE for compare (default: its own 2x13)")
    parser.add_argument("--keep", help="build into (or reuse) this directory instead of a temp dir")
    parser.add_argument("--build", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build(Path(args.build), args.exporter)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(args.keep or scratch)
        directory.mkdir(parents=True, exist_ok=True)
        model = directory / "onnx" / "model.onnx"
        if not model.exists():
            # A child builds: Linux keeps ru_maxrss across fork+exec, so a parent grown by
            # the export would inflate every measured child's peak.
            start = time.perf_counter()
            command = [sys.executable, "-m", "benchmarks.bench_compare", "--build",
                       str(directory), "--exporter", args.exporter]
            subprocess.run(command, cwd=REPO, check=True)
            print(f"built {model} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        weights = sum(f.stat().st_size for f in model.parent.iterdir() if f.name != model.name)
        runs = [measure(model, directory / "reference", args.shapes) for _ in range(args.runs)]
        peaks = [r["peak_rss_mb"] for r in runs]
        seconds = [r["seconds"] for r in runs]
        weights_mb = weights / 2**20
        result = {
            "cpu": cpu_name(), "cores": os.cpu_count(), "exporter": args.exporter,
            "shapes": args.shapes or "2x13 (compare's default)",
            "runs": len(runs), "weights_mb": round(weights_mb, 1),
            "peak_rss_mb_median": statistics.median(peaks),
            "peak_rss_mb_range": [min(peaks), max(peaks)],
            "peak_over_weights": round(statistics.median(peaks) / weights_mb, 2),
            "seconds_median": statistics.median(seconds),
            "seconds_range": [min(seconds), max(seconds)],
            "modules_aligned": runs[0]["modules_aligned"],
            "first_divergence": runs[0]["first_divergence"],
            "exit_code": runs[0]["exit_code"],
        }
        result["meets_target"] = result["peak_over_weights"] < TARGET_TIMES_WEIGHTS
        print(json.dumps(result, indent=2))
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
