"""The tokenizer beside the model: copied and said where from, or said to be missing.

A OneIE checkpoint names its encoder (`bert_model_name='bert-base-uncased'`); the
config then comes from the built-in table, which holds no tokenizer. transformers 5
builds a BERT tokenizer from no files at all (5 special tokens, every word [UNK]), so
an output without tokenizer files must make `AutoTokenizer` raise, and say so.
The table's entry is the tiny fixture BERT's config here, to keep the export small.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from builders.layouts import hf_cache
from rich.console import Console
from transformers import AutoConfig, AutoModel, AutoTokenizer

from extractor import extract
from extractor.errors import ExtractorError
from extractor.report import render_extraction
from extractor.resolve.architecture import resolve_config
from extractor.resolve.checkpoint import load_checkpoint
from extractor.resolve.config_fit import saved_config
from extractor.resolve.config_sources import tokenizer_dir
from extractor.resolve.known_configs import BUILTIN_CONFIGS
from extractor.resolve.state_dicts import strip_prefix

NAME = "bert-base-uncased"
SENTENCE = "the president visited the city, he said."


@pytest.fixture(scope="module")
def tiny_bert(fixture_checkpoint) -> Path:
    return fixture_checkpoint.parent / "tiny-bert"


@pytest.fixture(scope="module")
def well_known(tmp_path_factory, fixture_checkpoint, tiny_bert):
    """(folder, checkpoint) of the fixture's OneIE checkpoint naming `NAME`, alone in its
    folder, with the built-in table and an empty HF cache patched in for the module."""
    from huggingface_hub import constants

    folder = tmp_path_factory.mktemp("oneie")
    saved = torch.load(fixture_checkpoint, weights_only=False)
    saved["config"]["bert_model_name"] = NAME
    torch.save(saved, folder / "oneie_model.bin")
    values = json.loads((tiny_bert / "config.json").read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(BUILTIN_CONFIGS, NAME, (values.pop("model_type"), values))
        patch.setattr(constants, "HF_HUB_CACHE", str(folder / "empty-hub-cache"))
        yield folder, folder / "oneie_model.bin"


@pytest.fixture(scope="module")
def without(well_known):
    folder, checkpoint = well_known
    report = extract(checkpoint, "bert.", folder / "no-tokenizer")
    assert report.ok and report.config.kind == "builtin"
    return report


@pytest.fixture(scope="module")
def given(well_known, tiny_bert):
    folder, checkpoint = well_known
    report = extract(checkpoint, "bert.", folder / "given", tokenizer=tiny_bert)
    assert report.ok and report.config.kind == "builtin"
    return report


def _summary(report) -> str:
    console = Console(file=io.StringIO(), width=100)
    render_extraction(console, report)
    return console.file.getvalue()


def test_no_tokenizer_is_said_in_the_summary_with_how_to_supply_one(without):
    text = _summary(without)
    assert ("no tokenizer written: no tokenizer files were found for this model, so "
            "AutoTokenizer.from_pretrained on the output raises; supply one with --tokenizer "
            "DIR (a folder with its tokenizer files) or --model DIR") in " ".join(text.split())


def test_no_tokenizer_is_a_field_of_report_json(without):
    report = json.loads((without.output / "report.json").read_text())
    assert report["tokenizer"] == {
        "found": False, "files": [], "from": None, "given": False, "loads": False,
        "problem": None,
        "how_to_supply": "--tokenizer DIR (a folder with its tokenizer files) or --model DIR",
    }
    assert report["provenance"]["copied_from"] == {}
    assert not any(name in report["files"] for name in ("vocab.txt", "tokenizer.json"))


def test_autotokenizer_on_an_output_without_tokenizer_raises_not_an_empty_vocabulary(without):
    # Before: a BertTokenizer of 5 tokens that read "hello world" as [UNK] [UNK].
    with pytest.raises(ValueError):
        AutoTokenizer.from_pretrained(without.output, local_files_only=True)


def test_an_output_without_tokenizer_still_loads_as_a_model(without):
    config = AutoConfig.from_pretrained(without.output, local_files_only=True)
    assert config.model_type == "bert" and config.num_attention_heads == 4
    model = AutoModel.from_pretrained(without.output, local_files_only=True)
    assert type(model).__name__ == "BertModel"
    assert saved_config(without.output).hidden_size == 64  # what graft and bench read


def test_tokenizer_files_added_later_are_what_autotokenizer_loads(without, tiny_bert, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    for file in without.output.iterdir():
        (output / file.name).write_bytes(file.read_bytes())
    for name in ("vocab.txt", "tokenizer_config.json"):
        (output / name).write_bytes((tiny_bert / name).read_bytes())
    source = AutoTokenizer.from_pretrained(tiny_bert, local_files_only=True)
    assert len(AutoTokenizer.from_pretrained(output, local_files_only=True)) == len(source) > 5


def test_given_tokenizer_is_copied_and_tokenises_like_its_source(given, tiny_bert):
    assert set(given.tokenizer.files) == {"vocab.txt", "tokenizer_config.json"}
    for name in given.tokenizer.files:
        assert (given.output / name).read_bytes() == (tiny_bert / name).read_bytes()
    source = AutoTokenizer.from_pretrained(tiny_bert, local_files_only=True)
    copied = AutoTokenizer.from_pretrained(given.output, local_files_only=True)
    assert len(copied) == len(source) == 126  # 128 lines, "a" and "i" twice
    assert copied(SENTENCE)["input_ids"] == source(SENTENCE)["input_ids"]
    assert "[UNK]" not in copied.convert_ids_to_tokens(copied(SENTENCE)["input_ids"])
    assert "tokenizer_class" not in json.loads((given.output / "config.json").read_text())


def test_given_tokenizer_is_in_report_json_and_the_summary(given, tiny_bert):
    report = json.loads((given.output / "report.json").read_text())
    assert report["tokenizer"] == {
        "found": True, "files": list(given.tokenizer.files), "from": str(tiny_bert.resolve()),
        "given": True, "loads": True, "problem": None, "how_to_supply": None,
    }
    assert report["config"]["tokenizer_dir"] == str(tiny_bert.resolve())
    assert set(report["provenance"]["copied_from"]) == {"vocab.txt", "tokenizer_config.json"}
    text = " ".join(_summary(given).split())
    assert "no tokenizer written" not in text
    assert f"copied from {tiny_bert.resolve()}" in text


def _settings_only(folder: Path, tiny_bert: Path) -> Path:
    folder.mkdir()
    (folder / "tokenizer_config.json").write_bytes(
        (tiny_bert / "tokenizer_config.json").read_bytes())
    return folder


@pytest.mark.parametrize("case, says", [
    ("missing", "does not exist"),
    ("a file", "is not a folder"),
    ("empty folder", "holds no tokenizer vocabulary"),
    ("settings without a vocabulary", "holds no tokenizer vocabulary"),
    ("empty", "--tokenizer is empty"),
])
def test_bad_tokenizer_is_refused_in_one_line_and_nothing_is_written(well_known, tiny_bert,
                                                                     tmp_path, case, says):
    _, checkpoint = well_known
    tokenizer = {
        "missing": lambda: tmp_path / "nowhere",
        "a file": lambda: tiny_bert / "vocab.txt",
        "empty folder": lambda: (tmp_path / "empty").mkdir() or tmp_path / "empty",
        "settings without a vocabulary": lambda: _settings_only(tmp_path / "settings",
                                                                tiny_bert),
        "empty": lambda: "",
    }[case]()
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ExtractorError) as caught:
        extract(checkpoint, "bert.", tmp_path / "out", tokenizer=tokenizer)
    message = str(caught.value)
    assert says in message and "\n" not in message
    assert sorted(tmp_path.iterdir()) == before


def test_a_folder_with_tokenizer_settings_but_no_vocabulary_is_no_tokenizer(tmp_path, tiny_bert):
    assert tokenizer_dir(tiny_bert) == tiny_bert
    assert tokenizer_dir(_settings_only(tmp_path / "settings", tiny_bert)) is None


def test_a_builtin_name_takes_its_tokenizer_from_the_local_cache(well_known, tiny_bert,
                                                                   tmp_path):
    # BertTokenizer.from_pretrained (as OneIE calls it) caches the tokenizer, not the config.
    _, checkpoint = well_known
    cache = hf_cache(tmp_path / "hub", f"google-bert/{NAME}", tiny_bert)
    snapshot = next((cache / f"models--google-bert--{NAME}" / "snapshots").iterdir())
    (snapshot / "config.json").unlink()
    ckpt = load_checkpoint(checkpoint)
    weights = strip_prefix(ckpt.state_dict, "bert.")
    resolved = resolve_config(weights, ckpt, cache_dir=cache, prefix="bert.")
    assert resolved.kind == "builtin"
    assert resolved.tokenizer_dir == snapshot.resolve()
    assert resolve_config(weights, ckpt, prefix="bert.").tokenizer_dir is None  # empty cache


def test_cli_refuses_a_bad_tokenizer_folder_in_one_line(well_known, tmp_path, capsys):
    from extractor.__main__ import EXIT_USAGE, main

    _, checkpoint = well_known
    argv = [str(checkpoint), "--prefix", "bert.", "-o", str(tmp_path / "out"),
            "--tokenizer", str(tmp_path / "nowhere\n[red]x")]
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("error: --tokenizer ") and "does not exist" in line
    assert "nowhere\\n[red]x" in line and "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def broken_tokenizer(tmp_path_factory, tiny_bert) -> Path:
    """tiny-bert's tokenizer folder with a truncated tokenizer.json beside its vocabulary."""
    folder = tmp_path_factory.mktemp("broken-tokenizer")
    for name in ("vocab.txt", "tokenizer_config.json"):
        (folder / name).write_bytes((tiny_bert / name).read_bytes())
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": {')
    return folder


def test_tokenizer_files_that_do_not_load_are_said_not_shipped_silently(well_known, tiny_bert,
                                                                        broken_tokenizer):
    folder, checkpoint = well_known
    report = extract(checkpoint, "bert.", folder / "broken", tokenizer=broken_tokenizer)
    assert report.ok and report.tokenizer.found and report.tokenizer.problem
    with pytest.raises(ValueError):  # what the user's own first call would meet
        AutoTokenizer.from_pretrained(folder / "broken")
    saved = json.loads((folder / "broken" / "report.json").read_text())["tokenizer"]
    assert saved["loads"] is False and saved["problem"] == report.tokenizer.problem
    assert saved["how_to_supply"], saved
    summary = _summary(report)
    assert f"tokenizer files copied from {broken_tokenizer} do not load" in summary, summary
    fine = extract(checkpoint, "bert.", folder / "fine", tokenizer=tiny_bert)
    assert fine.tokenizer.problem is None and "do not load" not in _summary(fine)


def test_a_real_text_gate_refuses_tokenizer_files_that_do_not_load(well_known, broken_tokenizer,
                                                                  tmp_path):
    _, checkpoint = well_known
    with pytest.raises(ExtractorError) as caught:
        extract(checkpoint, "bert.", tmp_path / "out", tokenizer=broken_tokenizer,
                quantize="int8")
    message = str(caught.value)
    assert message.startswith(f"{broken_tokenizer}: its tokenizer cannot be loaded")
    assert "\n" not in message and not (tmp_path / "out").exists()


def test_a_tokenizer_file_nested_100000_deep_is_said_unparsed(well_known, tiny_bert, tmp_path):
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "vocab.txt").write_bytes((tiny_bert / "vocab.txt").read_bytes())
    (folder / "tokenizer.json").write_text("[" * 100_000 + "]" * 100_000)
    _, checkpoint = well_known
    report = extract(checkpoint, "bert.", tmp_path / "out", tokenizer=folder)
    assert report.tokenizer.problem.startswith("tokenizer.json: JSON nested"), report.tokenizer


def test_a_tokenizer_file_of_8_gib_is_refused_before_it_is_copied(well_known, tiny_bert,
                                                                    tmp_path):
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "vocab.txt").write_bytes((tiny_bert / "vocab.txt").read_bytes())
    with (folder / "tokenizer.json").open("wb") as handle:  # sparse: copying it writes 8 GiB
        handle.truncate(8 * 2**30)
    _, checkpoint = well_known
    with pytest.raises(ExtractorError) as caught:
        extract(checkpoint, "bert.", tmp_path / "out", tokenizer=folder)
    message = str(caught.value)
    assert message == (f"{folder}: tokenizer.json is 8.0 GiB, over the 64.0 MiB a tokenizer "
                       "file may take; pass --tokenizer DIR with the model's own tokenizer files")
    assert not (tmp_path / "out").exists()
