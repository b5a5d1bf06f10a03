"""Benchmark the static `check` on a bert-large-sized export (24 layers, ~1.3 GB external data).

    python -m benchmarks.bench_check [--exporter torchscript|dynamo] [--keep DIR]

Builds a random-weight bert-large with the extractor's `export_onnx` (weights in
external data) into a temporary directory, then runs `python -m diagnostics check
--json` in a fresh subprocess and reports its wall time and peak RSS (ru_maxrss of
the child). Targets: under 5 s and under 600 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS, TARGET_MB = 5.0, 600.0
BERT_LARGE = dict(
    vocab_size=30522,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    max_position_embeddings=512,
    type_vocab_size=2,
)


def build(directory: Path, exporter: str) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    from extractor.export import export_onnx

    torch.manual_seed(0)
    model = BertModel(BertConfig(**BERT_LARGE)).eval()
    path = directory / "model.onnx"
    export_onnx(model, path, exporter=exporter, external_data=True)
    return path


def measure(path: Path) -> dict[str, float | int | str]:
    """Run the check in a child process; its own ru_maxrss is the peak RSS."""
    script = (
        "import resource, sys, time\n"
        "start = time.perf_counter()\n"
        "from diagnostics.__main__ import main\n"
        "code = main(['check', sys.argv[1], '--json'])\n"
        "elapsed = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(f'BENCH {elapsed:.3f} {peak:.1f} {code}', file=sys.stderr)\n"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    line = next(x for x in done.stderr.splitlines() if x.startswith("BENCH "))
    _, inner, peak, code = line.split()
    report = json.loads(done.stdout)
    return {
        "wall_s_process": round(wall, 2),
        "wall_s_check": float(inner),
        # The child's own ru_maxrss: RUSAGE_CHILDREN would also count the exporter's helpers.
        "peak_rss_mb": float(peak),
        "exit_code": int(code),
        "findings": len(report["findings"]),
        "nodes": report["nodes"],
        "weights": report["weights"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    parser.add_argument("--keep", help="build into (or reuse) this directory instead of a temp dir")
    parser.add_argument("--build", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build(Path(args.build), args.exporter)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(args.keep or scratch)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "model.onnx"
        if not path.exists():
            # Build in a child: Linux keeps ru_maxrss across fork+exec, so a parent grown
            # by the export would inflate the measured child's peak.
            start = time.perf_counter()
            command = [sys.executable, __file__, "--build", str(directory)]
            subprocess.run([*command, "--exporter", args.exporter], check=True)
            print(f"built {path} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        weights = sum(f.stat().st_size for f in directory.iterdir() if f.name != "model.onnx")
        result = measure(path)
        result["graph_mb"] = round(path.stat().st_size / 2**20, 1)
        result["external_data_mb"] = round(weights / 2**20, 1)
        result["exporter"] = args.exporter
        ok = result["wall_s_process"] < TARGET_SECONDS and result["peak_rss_mb"] < TARGET_MB
        result["meets_target"] = ok
        print(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
