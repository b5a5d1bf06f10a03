"""The long run of the bad-input corpus: thousands of cases, every entry point.

    python -m benchmarks.fuzz_long [--cases 16000] [--structural 4000] [--seed 1]

The same seeds, mutations, entry points and contract as tests/test_bad_inputs.py
(tests/builders/bad_inputs.py), drawn with Python's random from `--seed`, plus every bad
argument, every hostile reproducer (tests/builders/hostile_extract.py and
hostile_onnx.py) and `--structural` cases from their structural generators: hostile values in
well-formed checkpoints, configs, safetensors headers, npz files and ONNX graphs.
Each case is stopped after 120 s (a hang breaks the contract). Prints each case
that broke the contract and a summary: cases, exit codes, contract breaks, cases per
category, the longest case and the process's peak memory.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import shutil
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
def main() -> None:
    from tests.builders.bad_inputs import (
        argument_cases,
        cases,
        hostile_cases,
        numbers_of,
        run_case,
        seeds,
        structural_cases,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=16000, help="mutated real files")
    parser.add_argument("--structural", type=int, default=4000,
                        help="hostile values in well-formed files")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    work = Path(tempfile.mkdtemp(prefix="subgraft-fuzz-"))
    seed_list = seeds(work)
    rng = random.Random(args.seed)
    todo = [("bad argument", c) for c in argument_cases(seed_list)]
    todo += [("hostile reproducer", c) for c in hostile_cases(work)]
    todo += [("structural", c) for c in structural_cases(rng, args.structural)]
    todo += [("mutation", c) for c in cases(seed_list, rng, args.cases)]
    outcomes, categories = [], collections.Counter()
    longest = (0.0, "")
    start = time.perf_counter()
    for index, (category, (label, files, argv)) in enumerate(todo):
        with tempfile.TemporaryDirectory(dir=work) as directory:
            outcome = run_case(Path(directory), files, argv)
        outcomes.append(outcome)
        categories[category] += 1
        longest = max(longest, (outcome.seconds, label))
        if outcome.problems():
            print(f"BROKE {label}: {outcome.problems()} | {outcome.stderr.strip()[-300:]}",
                  flush=True)
        if (index + 1) % 1000 == 0:
            print(f"... {index + 1} cases, {time.perf_counter() - start:.0f} s", flush=True)
    numbers = numbers_of(outcomes)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{numbers} in {time.perf_counter() - start:.0f} s")
    print("cases per category:", dict(sorted(categories.items())))
    print(f"longest case: {longest[0]:.1f} s ({longest[1]}); peak memory of the whole run: "
          f"{peak:.0f} MiB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
