"""The layouts real projects write (see tests/builders/layouts.py), extracted with no flags.

Each output must match the encoder as the project held it, built from its
*true* config, within 1e-4 at three shapes (on real tokens: what padded
positions hold is not defined), or be refused with one line and exit 2.
"""

from __future__ import annotations

import json

import pytest
from builders.layouts import (
    assert_matches,
    gliner,
    hf_cache,
    lightning,
    minilm,
    oneie,
    sentence_transformer,
    sentence_transformer_v1,
    span_marker,
)
from builders.tiny_encoders import tiny_encoder
from transformers import AutoTokenizer

from extractor.__main__ import EXIT_OK, EXIT_USAGE, main


def _extract(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _extract_ok(source, out, capsys, *flags):
    """Run the CLI as a user would; it must succeed. Returns (printed text, report.json)."""
    code, text, err = _extract([source, "-o", out, *flags], capsys)
    assert code == EXIT_OK, text + err
    return text, json.loads((out / "report.json").read_text())


def test_gliner_bert_takes_its_heads_from_encoder_config_not_a_guess(tmp_path, minilm_dir,
                                                                      capsys):
    directory, encoder = gliner(tmp_path / "gliner-bert", minilm_dir)
    out = tmp_path / "out"
    text, report = _extract_ok(directory, out, capsys)
    assert "config: bert (12 attention heads) from gliner_config.json['encoder_config']" in text
    assert report["prefix"] == "token_rep_layer.bert_layer.model."
    assert report["config"]["num_attention_heads"] == 12
    assert len(AutoTokenizer.from_pretrained(out)) == 30525  # [FLERT], <<ENT>>, <<SEP>>
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 30525
    assert_matches(out / "model.onnx", encoder)


def test_gliner_that_only_names_an_uncached_backbone_is_refused(tmp_path, minilm_dir, capsys):
    # GLiNER 0.1 wrote no encoder_config; without the backbone's files nothing says the heads.
    directory, _ = gliner(tmp_path / "gliner-old", minilm_dir)
    config = json.loads((directory / "gliner_config.json").read_text())
    del config["encoder_config"]
    config["model_name"] = "someone/uncached-backbone"
    (directory / "gliner_config.json").write_text(json.dumps(config))
    code, out, err = _extract([directory, "-o", tmp_path / "out"], capsys)
    assert code == EXIT_USAGE and "Traceback" not in err + out
    [line] = err.strip().splitlines()
    assert "'someone/uncached-backbone': not a local directory, not in the local Hugging " \
        "Face cache" in line
    assert "the weights have the bert layout, shared by bert, roberta" in line
    assert "--set model_type=...,num_attention_heads=N" in line
    assert not (tmp_path / "out").exists()
    # ...and the user's word is enough.
    text, _ = _extract_ok(directory, tmp_path / "out", capsys, "--set",
                          "model_type=bert,num_attention_heads=12")
    assert "set by you: model_type=bert, num_attention_heads=12" in text


def test_gliner_deberta_v3(tmp_path, minilm_dir, capsys):
    directory, encoder = gliner(tmp_path / "gliner-deberta", minilm_dir, backbone="deberta")
    out = tmp_path / "out"
    text, report = _extract_ok(directory, out, capsys)
    assert report["config"]["model_type"] == "deberta-v2"
    assert report["config"]["source"] == "gliner_config.json['encoder_config']"
    assert report["export"]["input_names"] == ["input_ids", "attention_mask"]
    assert_matches(out / "model.onnx", encoder)


def test_span_marker_nested_encoder_config(tmp_path, minilm_dir, capsys):
    directory, encoder = span_marker(tmp_path / "span-marker", minilm_dir)
    out = tmp_path / "out"
    text, report = _extract_ok(directory, out, capsys)
    assert report["config"]["source"] == "config.json['encoder']"
    assert report["prefix"] == "encoder."
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 30528
    assert "<start>" in AutoTokenizer.from_pretrained(out).get_vocab()
    assert_matches(out / "model.onnx", encoder)


def test_sentence_transformers_mpnet_root_layout(tmp_path, capsys):
    encoder = tiny_encoder("mpnet")
    directory = sentence_transformer(tmp_path / "st-mpnet", encoder, tokenizer_dir=None)
    out = tmp_path / "out"
    text, report = _extract_ok(directory, out, capsys)
    assert report["config"]["model_type"] == "mpnet"
    assert_matches(out / "model.onnx", encoder)


def test_sentence_transformers_v1_follows_modules_json(tmp_path, minilm_dir, capsys):
    directory, encoder = sentence_transformer_v1(tmp_path / "st-v1", minilm_dir)
    out = tmp_path / "out"
    text, report = _extract_ok(directory, out, capsys)
    assert report["config"]["source"] == "config.json"
    assert report["source"]["format"] == "directory:torch-zip"
    assert (out / "vocab.txt").is_file()
    assert_matches(out / "model.onnx", encoder)


def test_oneie_dict_config_names_a_model_in_the_local_cache(tmp_path, minilm_dir, capsys,
                                                           monkeypatch):
    from huggingface_hub import constants

    cache = hf_cache(tmp_path / "hub", "sentence-transformers/all-MiniLM-L6-v2", minilm_dir)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    encoder = minilm(minilm_dir)
    path = oneie(tmp_path / "best.role.mdl", encoder, "sentence-transformers/all-MiniLM-L6-v2")
    out = tmp_path / "out"
    text, report = _extract_ok(path, out, capsys)
    assert report["config"]["source"] == ("checkpoint['config']['bert_model_name']="
                                          "'sentence-transformers/all-MiniLM-L6-v2' (local files)")
    assert report["source"]["stand_ins"] == []
    assert (out / "tokenizer.json").is_file()
    assert_matches(out / "model.onnx", encoder)


def test_oneie_pickled_config_object_is_read_without_its_code(tmp_path, minilm_dir, capsys):
    encoder = minilm(minilm_dir)
    model_dir = tmp_path / "all-MiniLM-L6-v2"
    encoder.config.save_pretrained(model_dir)
    path = oneie(tmp_path / "best.role.mdl", encoder, "all-MiniLM-L6-v2", config_object=True)
    out = tmp_path / "out"
    text, report = _extract_ok(path, out, capsys)
    assert "pickled classes read as data, none of their code run: config.Config" in text
    assert report["config"]["source"].startswith(
        "checkpoint['config']['bert_model_name']='all-MiniLM-L6-v2'")
    assert_matches(out / "model.onnx", encoder)
    # Trusting it means importing OneIE's code, which is not here: one line saying so.
    code, stdout, err = _extract([path, "-o", tmp_path / "out2", "--trust-checkpoint"], capsys)
    assert code == EXIT_USAGE and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert "module 'config', which is not importable" in line and "PYTHONPATH" in line


@pytest.mark.parametrize("wrapped", [False, True])
def test_lightning_hyper_parameters_name_the_encoder(tmp_path, capsys, wrapped):
    from argparse import Namespace

    encoder = tiny_encoder("roberta")
    encoder.config.save_pretrained(tmp_path / "tiny-roberta")
    values = {"model_name": "tiny-roberta", "lr": 2e-5, "num_labels": 3}
    hyper = {"args": Namespace(**values)} if wrapped else values
    path = lightning(tmp_path / "epoch=1-step=1.ckpt", encoder, hyper)
    out = tmp_path / "out"
    text, report = _extract_ok(path, out, capsys)
    assert report["source"]["state_dict_location"] == "checkpoint['state_dict']"
    assert report["config"]["model_type"] == "roberta"
    assert report["source"]["stand_ins"] == (["argparse.Namespace"] if wrapped else [])
    assert_matches(out / "model.onnx", encoder)
