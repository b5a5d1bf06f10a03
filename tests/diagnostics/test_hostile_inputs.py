"""Issue 19, diagnostics side: hostile values in well-formed files keep the contract.

Every reproducer in `hostile_onnx.fixed_cases` ends as it must: a refusal in one line
(exit 2) or a verdict (0, 1, or 3 where nodes were not judged), fast, with no
traceback, nothing written and the input untouched; then a fixed-seed draw of the
structural generator; then the renderer, which must show names from a file as
written (markup and terminal escapes visible, never interpreted).
"""

from __future__ import annotations

import io
import random
from functools import cache
from pathlib import Path

import pytest
from builders import bad_inputs, hostile_onnx
from rich.console import Console

from diagnostics import check, repair
from diagnostics.errors import DiagnosticsError, ResourceLimitError
from diagnostics.report import render_check, render_repair

SECONDS = 30  # each case; the hang case must finish far sooner (it takes about a second)
GENERATED = 40


@cache
def _fixed() -> tuple:
    return tuple(hostile_onnx.fixed_cases(bad_inputs.collection_folder("hostile-onnx-")))


def _run(case_dir: Path, files: dict[str, bytes], argv: list[str]) -> bad_inputs.Outcome:
    plain = hostile_onnx.materialise_links(case_dir, files)
    return bad_inputs.run_case(case_dir, plain, argv, seconds=SECONDS)


def _seen(outcome: bad_inputs.Outcome) -> str:
    return (f"exit {outcome.code} after {outcome.seconds:.1f} s; stderr: "
            f"{outcome.stderr.strip()[-1200:]!r}; stdout: {outcome.stdout.strip()[-400:]!r}")


@pytest.mark.parametrize("label, files, argv", _fixed(), ids=[c[0] for c in _fixed()])
def test_each_reproducer_is_refused_in_one_line_or_judged(tmp_path, label, files, argv):
    outcome = _run(tmp_path, files, argv)
    expected = hostile_onnx.expected_codes(label)
    assert not outcome.problems(), f"{label}: broke the contract {outcome.problems()}; " \
        + _seen(outcome)
    assert outcome.code in expected, f"{label}: expected exit {expected}, saw " + _seen(outcome)
    if outcome.code == 2:
        assert outcome.stderr.startswith("error: "), f"{label}: " + _seen(outcome)


@pytest.mark.parametrize("argv", [hostile_onnx.CHECK, hostile_onnx.REPAIR],
                         ids=["check", "repair"])
def test_a_size_squared_64_times_is_not_judged_quickly(tmp_path, argv):
    outcome = _run(tmp_path, {"model.onnx": hostile_onnx.arithmetic_chain()}, argv)
    assert outcome.seconds < 10, f"expected well under 10 s, saw {_seen(outcome)}"
    if argv[1] == "check":
        assert outcome.code == 3, f"expected exit 3 (not judged), saw {_seen(outcome)}"
        assert "past 64 terms" in outcome.stdout, f"expected the reason, saw {_seen(outcome)}"


@pytest.mark.parametrize("label, files, argv",
                         hostile_onnx.generated_cases(random.Random(19), GENERATED),
                         ids=lambda value: value if isinstance(value, str) else "")
def test_generated_hostile_values_keep_the_contract(tmp_path, label, files, argv):
    outcome = _run(tmp_path, files, argv)
    assert not outcome.problems(), f"{label}: broke the contract {outcome.problems()}; " \
        + _seen(outcome)


# -- the Python API: DiagnosticsError only, with the limit named ------------------------------


def test_the_api_refuses_a_probe_input_past_max_memory(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(hostile_onnx.image_model(["batch", 3, 256, 256]))
    with pytest.raises(ResourceLimitError, match=r"over the memory limit of 1\.0 MiB"):
        check(path, probe=True, max_memory="1M")
    with pytest.raises(ResourceLimitError, match="1.0 MiB"):
        repair(path, output=tmp_path / "out.onnx", max_memory=2**20)
    assert not (tmp_path / "out.onnx").exists()


def test_the_api_refuses_an_npz_header_past_max_memory(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(hostile_onnx.frozen_reshape())
    npz = tmp_path / "in.npz"
    npz.write_bytes(hostile_onnx.npz({"input_ids": hostile_onnx.npy_header((2**40, 8))}))
    with pytest.raises(ResourceLimitError, match=r"\(1099511627776, 8\).*64\.0 TiB"):
        check(path, probe_inputs=[npz])


def test_a_bad_max_memory_is_a_usage_error(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(hostile_onnx.frozen_reshape())
    with pytest.raises(DiagnosticsError, match="not a size"):
        check(path, max_memory="lots")
    outcome = _run(tmp_path, {"model.onnx": hostile_onnx.frozen_reshape()},
                   ["d", "check", "{src}", "--max-memory", "-3"])
    assert outcome.code == 2 and not outcome.problems(), _seen(outcome)


# -- rendering: what a file names is shown as written -------------------------------------


NAMES = ["[/]", "[link=http://x]n[/link]", "[bold]b", "\x1b[31mred"]


def _rendered(render, report) -> str:
    buffer = io.StringIO()
    render(Console(file=buffer, width=100), report)
    return buffer.getvalue()


def _column(text: str, index: int) -> str:
    """The cells of one column of the first table, wrapped lines joined back together."""
    first = text.split("└", 1)[0]
    return "".join(line.split("│")[index].strip() for line in first.splitlines()
                   if line.startswith("│"))


@pytest.mark.parametrize("name", NAMES, ids=["close", "link", "bold", "escape"])
def test_check_shows_node_names_as_written(tmp_path, name):
    path = tmp_path / "model.onnx"
    path.write_bytes(hostile_onnx.frozen_reshape(node_name=name, output=name))
    text = _rendered(render_check, check(path))
    visible = name.replace("\x1b", "\\x1b")
    assert _column(text, 3) == visible, f"expected {visible!r} in the node column, saw:\n{text}"
    assert "\x1b" not in text, f"expected no raw escape, saw {text!r}"


def test_markup_in_paths_ops_and_metadata_is_shown_as_written(tmp_path):
    folder = tmp_path / "x[/]y[bold]"
    folder.mkdir(parents=True)  # "x[" holding "]y[bold]"
    path = folder / "model.onnx"
    path.write_bytes(hostile_onnx.frozen_reshape(
        node_name="node_view", metadata={"subgraft.exporter": "[/]ex"},
        node_meta={"pkg.torch.onnx.name_scopes": "['[/]mod', 'view']",
                   "pkg.torch.onnx.class_hierarchy": "['[link=http://x]C', 'aten.view']"}))
    text = _rendered(render_check, check(path))
    head = text.replace("\n", "")
    for expected in ("x[/]y[bold]/model.onnx", "exporter [/]ex"):
        assert expected in head, f"expected {expected!r} shown, saw:\n{text}"
    source = _column(text, 7)
    assert source == "[/]mod([link=http://x]C)", f"expected the source as written, saw:\n{text}"
    op = tmp_path / "op.onnx"
    op.write_bytes(hostile_onnx.model_bytes(
        [hostile_onnx.helper.make_node("[/]", ["input_ids"], ["y"], name="n")],
        [hostile_onnx._ids()], [hostile_onnx._out()]))
    text = _rendered(render_check, check(op))
    assert "[/] x1" in text, f"expected the op named as written, saw:\n{text}"


def test_repair_shows_node_names_as_written(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(hostile_onnx.frozen_reshape(node_name="[/][bold]n"))
    report = repair(path, output=tmp_path / "out[/].onnx")
    text = _rendered(render_repair, report)
    assert _column(text, 2) == "[/][bold]n", f"expected the node as written, saw:\n{text}"
    assert "out[/].onnx" in text.replace("\n", ""), f"expected the output path, saw:\n{text}"
