"""How idle threads' waiting moves `bench`'s ratios, on a quiet machine and beside a busy process.

    python -m benchmarks.bench_thread_wait DIR [--threads 2] [--runs 20] [--shapes 1x128,1x16]

Times the output directory DIR as `python -m extractor bench` does, four times:
idle threads spinning a while, then sleeping (both runtimes' defaults, bench's)
or sleeping at once (OMP_WAIT_POLICY=PASSIVE, onnxruntime without spinning:
`benchmark(..., spinning=False)`), each with the machine as it is and with one
more process spinning on a core (a Python busy loop, stopped at the end). It
prints one markdown table: per run, the other processes' busy cores bench
measured, PyTorch eager's median ms (quartiles), each file's speed-up (quartiles
over the turns) and how many figures bench flagged. Where the two policies'
speed-ups differ on a quiet machine, one runtime pays more for waking its
threads than the other.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--shapes", default="1x128,1x16")
    args = parser.parse_args()
    shapes = tuple(tuple(int(n) for n in s.split("x")) for s in args.shapes.split(","))

    from extractor.bench.speed import PYTORCH, benchmark, cpu_name

    rows = []
    for hog in (False, True):
        for spinning in (True, False):
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if hog else None
            try:
                timings = benchmark(args.directory, args.threads, args.runs, shapes,
                                    spinning=spinning)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            rows.append((hog, spinning, timings))

    models = list(dict.fromkeys(t.model for t in rows[0][2] if t.model != PYTORCH))
    labels = [f"{b}x{s}" for b, s in shapes]
    print(f"{cpu_name()}, {args.threads} threads, {os.cpu_count()} cores; median (quartiles)\n")
    print("| machine | idle threads | others' busy cores | "
          + " | ".join(f"PyTorch ms {label}" for label in labels) + " | "
          + " | ".join(f"{m} {label}" for m in models for label in labels) + " | flagged |")
    print("|---|---|---:|" + "---:|" * (len(labels) * (1 + len(models))) + "---:|")
    for hog, spinning, timings in rows:
        at = {(t.model, f"{t.batch}x{t.sequence}"): t for t in timings}
        base = [at[(PYTORCH, label)] for label in labels]
        ratios = [at[(m, label)] for m in models for label in labels]
        print(f"| {'+ 1 busy process' if hog else 'as it is'} | "
              f"{'spin, then sleep (bench)' if spinning else 'sleep at once'} | "
              f"{timings[0].conditions['other_processes_cores']} | "
              + " | ".join(f"{t.ms:.1f} ({t.ms_p25:.1f}-{t.ms_p75:.1f})" for t in base) + " | "
              + " | ".join(f"{t.speedup:.2f}x ({t.speedup_p25:.2f}-{t.speedup_p75:.2f})"
                           for t in ratios)
              + f" | {sum(bool(t.warnings) for t in timings)} of {len(timings)} |")


if __name__ == "__main__":
    main()
