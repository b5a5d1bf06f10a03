"""Property: every entry point keeps the bad-input contract on a fuzzed corpus.

One line (two at most) on stderr, exit 2 (or 0/1 where the input is in fact
valid), no traceback, nothing created under the output path, the input
unchanged, no code run. A fixed seed here (about 500 cases, under three
minutes); `benchmarks/fuzz_long.py` runs thousands more.
"""

from __future__ import annotations

import random
import tempfile
from functools import cache
from pathlib import Path

import pytest
from builders.bad_inputs import (
    ENTRY_POINTS,
    MUTATIONS,
    argument_cases,
    collection_folder,
    mutate,
    run_case,
    seeds,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnostics import check, repair
from diagnostics.errors import DiagnosticsError
from extractor import extract, load_checkpoint
from extractor.errors import ExtractorError

CI = settings(max_examples=420, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))


@cache
def _seeds() -> tuple:
    return tuple(seeds(collection_folder("subgraft-seeds-")))


def _files(seed_name: str, mutation: str, rng: random.Random) -> tuple[str, dict[str, bytes]]:
    seed = next(s for s in _seeds() if s.name == seed_name)
    if seed.kind == "dir":
        return seed.kind, {name: mutate(content, mutation, rng) if name.endswith(".json")
                           else content for name, content in seed.files.items()}
    first, *rest = seed.files
    return seed.kind, {first: mutate(seed.files[first], mutation, rng),
                       **{name: seed.files[name] for name in rest}}


SEED_NAMES = [s.name for s in seeds(collection_folder("subgraft-names-"))]


@CI
@given(seed=st.sampled_from(SEED_NAMES), mutation=st.sampled_from(MUTATIONS),
       entry=st.sampled_from(sorted(ENTRY_POINTS)), salt=st.integers(0, 2**32 - 1))
def test_every_command_keeps_the_contract_on_a_fuzzed_corpus(seed, mutation, entry, salt):
    kind, files = _files(seed, mutation, random.Random(salt))
    target = "{dir}" if kind == "dir" or entry == "bench" else "{src}"
    with tempfile.TemporaryDirectory() as directory:
        outcome = run_case(Path(directory), files, ENTRY_POINTS[entry](target, "{out}"))
    assert not outcome.problems(), (seed, mutation, entry, outcome.stderr[-1500:])


@pytest.mark.parametrize("label, files, argv", argument_cases(list(_seeds())),
                         ids=lambda value: value if isinstance(value, str) else "")
def test_arguments_that_do_not_parse_or_are_out_of_range(tmp_path, label, files, argv):
    outcome = run_case(tmp_path, files, argv)
    assert outcome.code == 2 and not outcome.problems(), outcome.stderr[-1500:]


@settings(max_examples=100, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(seed=st.sampled_from(SEED_NAMES), mutation=st.sampled_from(MUTATIONS),
       function=st.sampled_from(["load_checkpoint", "extract", "check", "repair"]),
       salt=st.integers(0, 2**32 - 1))
def test_the_python_api_raises_only_its_own_errors(seed, mutation, function, salt):
    kind, files = _files(seed, mutation, random.Random(salt))
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        for name, content in files.items():
            (directory / name).write_bytes(content)
        source = directory if kind == "dir" else directory / next(iter(files))
        call = {
            "load_checkpoint": lambda: load_checkpoint(source),
            "extract": lambda: extract(source, None, directory / "out"),
            "check": lambda: check(source),
            "repair": lambda: repair(source, directory / "out"),
        }[function]
        try:
            call()
        except (ExtractorError, DiagnosticsError) as exc:
            assert "\n" not in str(exc)
        assert not (directory / "ran-code.marker").exists()
