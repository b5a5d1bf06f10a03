"""Hostile inputs (issue 19): well-formed files and flags that declare harmful things.

Every reproducer is refused in one line with exit 2, no traceback, nothing written
and the input untouched, or, where the input is in fact valid (a deflated zip, a
tokenizer in another folder, markup in names), extracts and says what it did.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import torch
from builders.bad_inputs import collection_folder, run_case
from builders.hostile_extract import (
    EXTRACT,
    MARKUP,
    VALID,
    checkpoint,
    fixed_cases,
    generated_cases,
    quantized,
    state_dict,
    tiny_config,
)
from transformers import BertConfig, DistilBertConfig

from extractor import extract
from extractor.errors import ArchitectureError, CheckpointError, ExtractorError
from extractor.resolve.architecture import resolve_config
from extractor.resolve.checkpoint import load_checkpoint
from extractor.resolve.config_checks import new_config, values_problem
from extractor.resolve.state_dicts import refuse_unusable, strip_prefix

CASE_SECONDS = 60
FIXED = fixed_cases(collection_folder("subgraft-hostile-"))


def _label(value: object) -> str:
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize("label, files, argv", [c for c in FIXED if c[0] not in VALID],
                         ids=_label)
def test_each_reproducer_is_refused_in_one_line(tmp_path, label, files, argv):
    start = time.perf_counter()
    outcome = run_case(tmp_path, files, argv)
    seconds = time.perf_counter() - start
    assert outcome.code == 2 and not outcome.problems(), (
        f"expected exit 2 and no broken contract, saw exit {outcome.code}, "
        f"{outcome.problems()}: {outcome.stderr[-1500:]}")
    assert outcome.stderr.startswith(("error: ", "usage", "python -m extractor")), outcome.stderr
    assert seconds < CASE_SECONDS, f"expected under {CASE_SECONDS} s, took {seconds:.0f} s"


@pytest.mark.parametrize("label, files, argv", [c for c in FIXED if c[0] in VALID], ids=_label)
def test_valid_inputs_among_them_extract(tmp_path, label, files, argv):
    outcome = run_case(tmp_path, files, argv)
    assert outcome.code == 0 and not outcome.problems(), (
        f"expected exit 0, saw {outcome.code} {outcome.problems()}: {outcome.stderr[-1500:]}")


def test_a_deflated_zip_is_read_without_mmap_and_says_so(tmp_path):
    label, files, argv = next(c for c in FIXED if c[0] == "deflated torch zip (valid)")
    outcome = run_case(tmp_path, files, argv)
    assert outcome.code == 0, outcome.stderr[-1500:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["source"]["mmap"] is False
    assert "compressed" in report["source"]["notes"][0]
    assert "not memory-mapped" in outcome.stdout


@pytest.mark.parametrize("label", ["tokenizer folder at an absolute path elsewhere",
                                   "tokenizer folder at '../..'"])
def test_files_copied_from_outside_the_checkpoint_folder_are_named(tmp_path, label):
    _, files, argv = next(c for c in FIXED if c[0] == label)
    outcome = run_case(tmp_path, files, argv)
    assert outcome.code == 0, outcome.stderr[-1500:]
    provenance = json.loads((tmp_path / "out" / "report.json").read_text())["provenance"]
    copied = provenance["copied_from"]
    assert set(copied) == {"vocab.txt", "tokenizer_config.json"}
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in copied.values())
    assert provenance["outside_checkpoint_folder"] == sorted(copied)
    assert provenance["config"]["file"] and provenance["config"]["outside_checkpoint_folder"]
    assert "outside the checkpoint's folder" in outcome.stdout


def test_markup_in_a_folder_name_is_shown_as_written(tmp_path):
    _, files, argv = next(c for c in FIXED if c[0] == "markup in the checkpoint's folder name")
    outcome = run_case(tmp_path, files, argv)
    assert outcome.code == 0, outcome.stderr[-1500:]
    assert f"out/{Path(MARKUP)}" in outcome.stdout.replace("\n", "")  # as written, not markup


def test_generated_hostile_values_keep_the_contract(tmp_path):
    for index, (label, files, argv) in enumerate(generated_cases(random.Random(19), 40)):
        start = time.perf_counter()
        outcome = run_case(tmp_path / str(index), files, argv)
        seconds = time.perf_counter() - start
        assert not outcome.problems(), (label, outcome.problems(), outcome.stderr[-1500:])
        assert seconds < CASE_SECONDS, f"{label}: expected under {CASE_SECONDS} s, took {seconds}"


# The Python API: only ExtractorError subclasses, one line each.

@pytest.mark.parametrize("name, value", [
    ("num_attention_heads", 0), ("num_attention_heads", -12), ("num_attention_heads", "twelve"),
    ("num_attention_heads", 12.5), ("vocab_size", -1), ("vocab_size", 0),
    ("max_position_embeddings", -5), ("layer_norm_eps", "abc"), ("hidden_act", "os.system"),
    ("torch_dtype", "os.system"), ("hidden_size", 2**40), ("layer_norm_eps", float("inf")),
    ("is_decoder", "yes"), ("to_dict", 1), ("hidden_size", 65),
])
def test_new_config_refuses_a_value_naming_it_and_what_was_expected(name, value):
    with pytest.raises(ArchitectureError) as caught:
        new_config(BertConfig, {**tiny_config(), name: value}, "config.json")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("config.json: ")
    assert name in message and "expected" in message or "multiple" in message


def test_values_problem_reads_defaults_through_the_type_s_aliases():
    # DistilBERT calls hidden_size `dim` and heads `n_heads`; both names are checked.
    assert "positive" in values_problem(DistilBertConfig, {"n_heads": 0})
    assert "positive" in values_problem(DistilBertConfig, {"num_attention_heads": 0})
    assert values_problem(DistilBertConfig, {"dim": 64, "n_heads": 4}) is None


def test_values_problem_accepts_a_real_config():
    assert values_problem(BertConfig, tiny_config()) is None
    assert values_problem(BertConfig, {**tiny_config(), "torch_dtype": "float16",
                                       "pad_token_id": None}) is None


def _weights() -> dict[str, torch.Tensor]:
    return strip_prefix(state_dict(), "bert.")


def test_a_config_with_more_layers_than_the_weights_is_refused_naming_both_before_any_is_built(
    monkeypatch,
):
    # What keeps the refusal quick is that no encoder of 100,000 layers is built (not even
    # on the meta device); asserted as that, not as seconds, which vary with the machine.
    from transformers.models.bert import modeling_bert

    built: list[int] = []
    build = modeling_bert.BertEncoder.__init__

    def record(self, config, *args, **kwargs):
        built.append(config.num_hidden_layers)
        build(self, config, *args, **kwargs)

    monkeypatch.setattr(modeling_bert.BertEncoder, "__init__", record)
    with pytest.raises(ArchitectureError, match=r"num_hidden_layers=100000 but the weights "
                       r"hold 2 layers"):
        resolve_config(_weights(), overrides={"model_type": "bert", **tiny_config(),
                                              "num_hidden_layers": 100_000})
    assert built and max(built) <= 2, (
        f"expected encoders of at most the weights' 2 layers built, saw layer counts {built}")


def test_a_model_over_the_memory_budget_is_refused_before_it_is_built(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(tiny_config()))
    with pytest.raises(ArchitectureError, match="over the memory limit of 1.0 KiB"):
        resolve_config(_weights(), config_file=tmp_path / "config.json", max_memory=1024)


@pytest.mark.parametrize("tensor, words", [
    (torch.empty(64, 64, device="meta"), "meta tensor"),
    (torch.zeros(64, 64, dtype=torch.complex64), "complex64"),
    (torch.zeros(64, 64, dtype=torch.bool), "bool"),
    (torch.zeros(64, 64, dtype=torch.int8), "int8"),
    (quantized(torch.zeros(64, 64)), "quantized"),
])
def test_unusable_encoder_weights_are_refused_naming_key_and_dtype(tensor, words):
    weights = {**_weights(), "encoder.layer.0.attention.self.query.weight": tensor}
    with pytest.raises(CheckpointError) as caught:
        refuse_unusable(weights, "bert.")
    assert "bert.encoder.layer.0.attention.self.query.weight" in str(caught.value)
    assert words in str(caught.value)


def test_position_ids_buffers_stay_usable():
    refuse_unusable({**_weights(), "embeddings.position_ids": torch.arange(8)})


def test_extract_refuses_a_bad_max_memory(tmp_path):
    (tmp_path / "model.bin").write_bytes(checkpoint(tiny_config()))
    with pytest.raises(ExtractorError, match="max_memory: not a size"):
        extract(tmp_path / "model.bin", "bert.", tmp_path / "out", max_memory="lots")
    assert not (tmp_path / "out").exists()


def test_extract_refuses_a_zip_declaring_more_than_the_budget(tmp_path):
    from builders.hostile_extract import deflated

    (tmp_path / "model.bin").write_bytes(deflated(checkpoint(tiny_config()),
                                                  {"data/0": 16 * 2**30}))
    with pytest.raises(CheckpointError, match=r"16\.0 GiB, over the memory limit of 8\.0 GiB"):
        load_checkpoint(tmp_path / "model.bin", max_memory=8 * 2**30)


def test_extract_api_raises_only_extractor_errors_on_checkpoint_reproducers(tmp_path):
    for index, (label, files, argv) in enumerate(FIXED):
        if argv != EXTRACT or not label.startswith(("checkpoint config", "JSON", "5000")) and \
                not label.endswith("encoder weight"):
            continue
        directory = tmp_path / str(index)
        for name, content in files.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_bytes(content)
        with pytest.raises(ExtractorError) as caught:
            extract(directory / next(iter(files)), "bert.", directory / "out")
        assert "\n" not in str(caught.value), label
