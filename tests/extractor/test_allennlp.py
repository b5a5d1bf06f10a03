"""AllenNLP models (DyGIE++ and the rest): `model.tar.gz` or `best.th` with config.json.

The transformer is named only by the token embedder's `model_name`; it is followed to a
local directory or the local Hugging Face cache, or the run is refused naming it. The
archive is opened as hostile: no member that escapes, no links where files are wanted,
sizes checked before anything is unpacked, the temporary folder removed.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path

import pytest
import torch
from builders.allennlp_like import (
    MISMATCHED,
    PLAIN,
    archive,
    classifier_config,
    classifier_state,
    dygie_config,
    dygie_state,
    hostile_archive,
    serialization_dir,
)
from builders.layouts import assert_matches, hf_snapshot
from builders.peft_like import tiny_bert

from extractor.__main__ import EXIT_OK, EXIT_USAGE, main
from extractor.errors import CheckpointError
from extractor.resolve.archives import extracted


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _refused(capsys, *argv) -> str:
    code, out, err = _run(capsys, *argv)
    assert code == EXIT_USAGE and "Traceback" not in out + err, out + err
    [line] = err.strip().splitlines()
    return line


def _model_dir(directory: Path, encoder) -> Path:
    """The transformer as `from_pretrained(model_name)` found it: its config (and no more)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(encoder.config.to_dict()))
    return directory


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("subgraft-archive-*")}


@pytest.mark.parametrize("embedder", [MISMATCHED, PLAIN])
def test_dygie_archive_follows_model_name_to_a_local_directory(tmp_path, capsys, embedder):
    encoder = tiny_bert(seed=11)
    model_dir = _model_dir(tmp_path / "models" / "tiny-scibert", encoder)
    path = archive(tmp_path, dygie_config(str(model_dir), embedder),
                   dygie_state(encoder, embedder))
    before = _leftovers()
    out = tmp_path / "out"
    code, text, err = _run(capsys, path, "-o", out)
    assert code == EXIT_OK, text + err
    assert _leftovers() == before  # the unpacked copy is gone
    report = json.loads((out / "report.json").read_text())
    inner = "_matched_embedder." if embedder == MISMATCHED else ""
    assert report["prefix"] == f"_embedder.token_embedder_bert.{inner}transformer_model."
    assert report["source"]["format"] == "allennlp-archive:torch-zip"
    assert report["config"]["source"].startswith(
        "model.tar.gz:config.json['model']['text_field_embedder']['token_embedders']['bert']"
        f"['model_name']={str(model_dir)!r}")
    assert report["config"]["num_attention_heads"] == 3
    assert assert_matches(out / "model.onnx", encoder) < 1e-4


def test_archive_model_name_in_the_local_hf_cache(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    encoder = tiny_bert(seed=12)
    _model_dir(hf_snapshot(tmp_path / "hub", "allenai/tiny-scibert"), encoder)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    path = archive(tmp_path, classifier_config("allenai/tiny-scibert"),
                   classifier_state(encoder))
    out = tmp_path / "out"
    code, text, err = _run(capsys, path, "--prefix",
                           "_text_field_embedder.token_embedder_tokens.transformer_model.",
                           "-o", out)
    assert code == EXIT_OK, text + err
    assert assert_matches(out / "model.onnx", encoder) < 1e-4


def test_serialization_folder_best_th_with_config_beside(tmp_path, capsys):
    encoder = tiny_bert(seed=13)
    model_dir = _model_dir(tmp_path / "tiny-bert", encoder)
    folder = serialization_dir(tmp_path / "run", dygie_config(str(model_dir)),
                               dygie_state(encoder))
    for source in (folder / "best.th", folder):
        out = tmp_path / f"out-{source.name}"
        code, text, err = _run(capsys, source, "-o", out)
        assert code == EXIT_OK, text + err
        report = json.loads((out / "report.json").read_text())
        assert report["config"]["source"].startswith("config.json['model']")
        assert_matches(out / "model.onnx", encoder)


def test_archive_naming_an_unavailable_model_is_refused_naming_it(tmp_path, capsys):
    encoder = tiny_bert(seed=14)
    path = archive(tmp_path, dygie_config("someone/uncached-bert"), dygie_state(encoder))
    line = _refused(capsys, path, "-o", tmp_path / "out")
    assert "['model_name']='someone/uncached-bert': not a local directory, not in the " \
        "local Hugging Face cache, not in the built-in table" in line
    assert not (tmp_path / "out").exists()


def test_archive_whose_embedder_changes_the_model_is_refused(tmp_path, capsys):
    encoder = tiny_bert(seed=15)
    model_dir = _model_dir(tmp_path / "tiny-bert", encoder)
    config = classifier_config(str(model_dir),
                               transformer_kwargs={"num_attention_heads": 6})
    path = archive(tmp_path, config, classifier_state(encoder))
    line = _refused(capsys, path, "-o", tmp_path / "out")
    assert "transformer_kwargs num_attention_heads change the named model's config" in line


def test_a_tar_that_is_not_an_allennlp_archive_is_refused(tmp_path, capsys):
    path = hostile_archive(tmp_path / "model.tar.gz", [("notes.txt", b"hello")])
    line = _refused(capsys, path, "-o", tmp_path / "out")
    assert "without config.json and weights.th at its root" in line
    path = tmp_path / "weights.gz"
    path.write_bytes(b"\x1f\x8b" + b"\0" * 40)
    line = _refused(capsys, path, "-o", tmp_path / "out")
    assert "not a readable tar archive" in line


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(("member", "said"), [
    (("../escape.txt", b"x"), "'../escape.txt' leads outside the archive's folder"),
    (("/etc/evil", b"x"), "'/etc/evil' leads outside"),
    (_link("vocabulary/x", "../../../etc/passwd"), "points outside"),
    (_link("weights.th", "config.json"), "'weights.th' is a link, not a file"),
    (_link("weights.th", "", tarfile.CHRTYPE), "'weights.th' is a device or special file"),
    (("config.json", b"{}"), "'config.json' appears twice"),
], ids=["dotdot", "absolute", "symlink-out", "link-as-weights", "device", "repeated"])
def test_hostile_archive_members_are_refused_before_anything_is_written(tmp_path, capsys,
                                                                        member, said):
    config = json.dumps(dygie_config("x")).encode()
    path = hostile_archive(tmp_path / "model.tar.gz", [("config.json", config), member])
    before = _leftovers()
    line = _refused(capsys, path, "-o", tmp_path / "out")
    assert said in line and "refused" in line
    assert _leftovers() == before
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()


def test_declared_sizes_are_checked_before_unpacking(tmp_path):
    path = hostile_archive(tmp_path / "model.tar.gz", [("config.json", b"{}"),
                                                       ("weights.th", b"\0" * 4096)])
    with pytest.raises(CheckpointError, match="over the memory limit"), \
            extracted(path, ("config.json", "weights.th"), max_memory=1024):
        pass
    with pytest.raises(CheckpointError, match="'weights.th' declares 4.0 KiB, over the 1.0 KiB"), \
            extracted(path, ("config.json", "weights.th"), max_sizes={"weights.th": 1024}):
        pass
    with extracted(path, ("config.json", "weights.th"), max_memory=1 << 20) as files:
        assert files["weights.th"].stat().st_size == 4096
        folder = files["weights.th"].parent
    assert not folder.exists()


def test_list_opens_the_archive(tmp_path, capsys):
    encoder = tiny_bert(seed=16)
    path = archive(tmp_path, dygie_config("x"), dygie_state(encoder))
    code, out, err = _run(capsys, path, "--list", "--json")
    assert code == EXIT_OK, out + err
    listed = json.loads(out)
    assert listed["location"] == "weights.th top level"
    assert "_embedder.token_embedder_bert._matched_embedder.transformer_model." in [
        row["prefix"] for row in listed["prefixes"]]


def test_dygie_default_bert_base_cased_comes_from_the_built_in_table(tmp_path):
    """DyGIE++'s default `bert_model` offline: no cache, the table's config fits the weights
    (checked on shapes only: meta tensors, nothing of bert-base's size is allocated)."""
    from transformers import AutoConfig, BertModel

    from extractor.resolve.architecture import resolve_config
    from extractor.resolve.known_configs import builtin_config
    from extractor.resolve.opening import open_checkpoint
    from extractor.resolve.state_dicts import strip_prefix

    config = builtin_config("bert-base-cased")
    assert isinstance(config, type(AutoConfig.for_model("bert")))
    with torch.device("meta"):
        encoder = BertModel(config)
    path = archive(tmp_path, dygie_config("bert-base-cased"), dygie_state(encoder))
    ckpt = open_checkpoint(path)
    prefix = "_embedder.token_embedder_bert._matched_embedder.transformer_model."
    resolved = resolve_config(strip_prefix(ckpt.state_dict, prefix), ckpt, prefix=prefix,
                              cache_dir=tmp_path / "empty-cache")
    assert resolved.kind == "builtin"
    assert resolved.source.endswith("['model_name']='bert-base-cased', built-in table")
    assert resolved.config.num_attention_heads == 12


def test_allennlp_0_9_bert_pretrained_embedder(tmp_path, capsys):
    """AllenNLP 0.9 (the first DyGIE): `bert-pretrained` names its model in
    `pretrained_model`; pytorch-pretrained-bert's BertModel sits under `bert_model.`."""
    encoder = tiny_bert(seed=17)
    model_dir = _model_dir(tmp_path / "tiny-bert", encoder)
    config = dygie_config("unused")
    config["model"]["text_field_embedder"] = {
        "allow_unmatched_keys": True, "embedder_to_indexer_map": {"bert": ["bert", "bert-offsets"]},
        "token_embedders": {"bert": {"type": "bert-pretrained", "pretrained_model": str(model_dir),
                                     "requires_grad": True}}}
    state = {f"_text_field_embedder.token_embedder_bert.bert_model.{k}": v
             for k, v in encoder.state_dict().items()}
    path = archive(tmp_path, config, state)
    out = tmp_path / "out"
    code, text, err = _run(capsys, path, "-o", out)
    assert code == EXIT_OK, text + err
    report = json.loads((out / "report.json").read_text())
    assert "['bert']['pretrained_model']=" in report["config"]["source"]
    assert assert_matches(out / "model.onnx", encoder) < 1e-4
