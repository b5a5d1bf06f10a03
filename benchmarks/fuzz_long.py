"""The long run of the bad-input corpus: thousands of cases, every entry point.

    python benchmarks/fuzz_long.py [--cases 6000] [--seed 1]

The same seeds, mutations, entry points and contract as tests/test_bad_inputs.py
(tests/bad_inputs.py), drawn with Python's random from `--seed`, plus every bad
argument. Prints each case that broke the contract and a summary: cases, exit
codes, contract breaks, and the kinds of first lines on stderr.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "tests"))


def main() -> None:
    from bad_inputs import argument_cases, cases, numbers_of, run_case, seeds

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    work = Path(tempfile.mkdtemp(prefix="subgraft-fuzz-"))
    seed_list = seeds(work)
    todo = argument_cases(seed_list) + cases(seed_list, random.Random(args.seed), args.cases)
    outcomes, entries = [], collections.Counter()
    start = time.perf_counter()
    for index, (label, files, argv) in enumerate(todo):
        with tempfile.TemporaryDirectory(dir=work) as directory:
            outcome = run_case(Path(directory), files, argv)
        outcomes.append(outcome)
        entries[label.rsplit(" / ", 1)[-1] if " / " in label else "bad argument"] += 1
        if outcome.problems():
            print(f"BROKE {label}: {outcome.problems()} | {outcome.stderr.strip()[-300:]}")
        if (index + 1) % 500 == 0:
            print(f"... {index + 1} cases, {time.perf_counter() - start:.0f} s", flush=True)
    numbers = numbers_of(outcomes)
    print(f"{numbers} in {time.perf_counter() - start:.0f} s")
    print("cases per entry point:", dict(sorted(entries.items())))


if __name__ == "__main__":
    main()
