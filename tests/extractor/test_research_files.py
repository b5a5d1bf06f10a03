"""Whole pickled models, TensorFlow/Paddle conversions and quantized checkpoints
(tests/builders/research_files.py), through the CLI as a user runs it.

An extracted file must match the encoder built from its true config within 1e-4;
a refused one is one line, exit 2, nothing written.
"""

from __future__ import annotations

import json

import pytest
import torch
from builders.layouts import assert_matches
from builders.research_files import (
    BERT_SIZES,
    Tagger,
    legacy_layer_norm,
    quantized,
    uie,
    whole_model,
)
from builders.tiny_encoders import tiny_encoder

from extractor.__main__ import EXIT_OK, EXIT_USAGE, main
from extractor.resolve.checkpoint import load_checkpoint
from extractor.resolve.converted import legacy_names

ROBERTA = dict(max_position_embeddings=66, pad_token_id=1, type_vocab_size=1)


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _extract_ok(capsys, source, out, *flags):
    code, text, err = _run(capsys, source, "-o", out, *flags)
    assert code == EXIT_OK, text + err
    return text, json.loads((out / "report.json").read_text())


def _refused(capsys, source, out, *flags) -> str:
    code, text, err = _run(capsys, source, "-o", out, *flags)
    assert code == EXIT_USAGE and "Traceback" not in text + err
    assert not out.exists()
    [line] = err.strip().splitlines()
    return line


@pytest.mark.parametrize("trust", [False, True], ids=["stand-ins", "trusted"])
@pytest.mark.parametrize("model_type, sizes", [("bert", {}), ("roberta", ROBERTA)])
def test_a_whole_pickled_model_gives_its_own_config(tmp_path, capsys, trust, model_type, sizes):
    path, encoder = whole_model(tmp_path / "tagger.pt", model_type, **sizes)
    out = tmp_path / "out"
    flags = ["--trust-checkpoint"] if trust else []
    text, report = _extract_ok(capsys, path, out, *flags)
    assert report["prefix"] == "bert."
    assert report["config"]["source"] == "checkpoint.bert.config"
    assert report["config"]["model_type"] == model_type
    assert report["config"]["num_attention_heads"] == 3  # 48 wide: shapes would not say 3
    stand_ins = report["source"]["stand_ins"]
    if trust:
        assert stand_ins == []
    else:  # read as data: neither the project's class nor transformers' code was run
        assert f"{Tagger.__module__}.Tagger" in stand_ins
        assert any(name.endswith(("BertConfig", "RobertaConfig")) for name in stand_ins)
    assert_matches(out / "model.onnx", encoder)


def test_a_pickled_config_is_checked_like_any_other(tmp_path, capsys):
    encoder = tiny_encoder("bert", **BERT_SIZES)
    encoder.config.num_attention_heads = 0  # a value no config file may carry either
    path = tmp_path / "tagger.pt"
    torch.save(Tagger(encoder), path)
    line = _refused(capsys, path, tmp_path / "out")
    assert "checkpoint.bert.config: num_attention_heads is 0" in line
    assert "pass --config or --model" in line


def test_a_pickled_model_that_loops_is_read_once(tmp_path):
    # A pickle can link a module into itself; the walk must end (and run no code).
    path, _ = whole_model(tmp_path / "tagger.pt")
    model = torch.load(path, weights_only=False)
    model.bert._modules["loop"] = model
    torch.save(model, path)
    ckpt = load_checkpoint(path)
    assert list(ckpt.module_configs) == ["checkpoint.bert.config"]
    assert "bert.encoder.layer.1.output.dense.weight" in ckpt.state_dict


def test_uie_conversion_extracts_as_ernie(tmp_path, capsys):
    directory, encoder = uie(tmp_path / "uie_base_pytorch")
    out = tmp_path / "out"
    text, report = _extract_ok(capsys, directory, out)
    assert report["prefix"] == "encoder."
    assert report["config"]["model_type"] == "ernie"
    assert report["config"]["source"] == "config.json (model_type ernie: the weights' names)"
    assert report["source"]["notes"] == [
        "10 LayerNorm weights named gamma/beta (a TensorFlow or Paddle conversion) read as "
        "weight/bias, as transformers does"]
    assert json.loads((out / "config.json").read_text())["use_task_id"] is True
    assert_matches(out / "model.onnx", encoder)


def test_uie_conversion_with_model_type_added_by_the_user(tmp_path, capsys):
    directory, encoder = uie(tmp_path / "uie")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "ernie"}))
    out = tmp_path / "out"
    text, report = _extract_ok(capsys, directory, out)
    assert report["config"]["source"] == "config.json"
    assert_matches(out / "model.onnx", encoder)


def test_a_config_without_model_type_on_a_shared_layout_is_refused(tmp_path, capsys):
    # TensorFlow's BERT conversion: gamma/beta, and a bert_config.json with no model_type.
    # BERT and RoBERTa share the names but not the numbers: the type is the user's to say.
    encoder = tiny_encoder("bert", **BERT_SIZES)
    directory = tmp_path / "tf-bert"
    directory.mkdir()
    torch.save({legacy_layer_norm(k): v for k, v in encoder.state_dict().items()},
               directory / "pytorch_model.bin")
    values = {k: v for k, v in encoder.config.to_dict().items() if k != "model_type"}
    (directory / "bert_config.json").write_text(json.dumps(values))
    line = _refused(capsys, directory, tmp_path / "out")
    assert "bert_config.json: no model_type, and the weights have the bert layout, shared by " \
        "bert, roberta" in line
    (directory / "bert_config.json").write_text(json.dumps({**values, "model_type": "bert"}))
    _, report = _extract_ok(capsys, directory, tmp_path / "out")
    assert report["config"]["num_attention_heads"] == 3
    assert_matches(tmp_path / "out" / "model.onnx", encoder)


def test_gamma_beta_are_renamed_only_where_transformers_would():
    weights = {"a.LayerNorm.gamma": torch.ones(2), "a.LayerNorm.beta": torch.zeros(2),
               "b.LayerNorm.gamma": torch.ones(2), "b.LayerNorm.weight": torch.ones(2),
               "c.layer_scale.gamma": torch.ones(2)}
    renamed, count = legacy_names(weights)
    assert count == 2
    assert set(renamed) == {"a.LayerNorm.weight", "a.LayerNorm.bias", "b.LayerNorm.gamma",
                            "b.LayerNorm.weight", "c.layer_scale.gamma"}


def test_a_sharded_conversion_is_renamed_after_its_index_is_checked(tmp_path):
    from safetensors.torch import save_file

    encoder = tiny_encoder("bert", **BERT_SIZES)
    state = {legacy_layer_norm(k): v.contiguous() for k, v in encoder.state_dict().items()}
    names = sorted(state)
    halves = {"part-1.safetensors": names[: len(names) // 2],
              "part-2.safetensors": names[len(names) // 2:]}
    for file, keys in halves.items():
        save_file({k: state[k] for k in keys}, tmp_path / file)
    index = {"weight_map": {k: file for file, keys in halves.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    ckpt = load_checkpoint(tmp_path)
    assert set(ckpt.state_dict) == set(encoder.state_dict())


@pytest.mark.parametrize("trust", [False, True], ids=["stand-ins", "trusted"])
@pytest.mark.parametrize("whole", [False, True], ids=["state-dict", "whole-model"])
def test_a_dynamically_quantized_checkpoint_is_named_and_refused(tmp_path, capsys, whole,
                                                                 trust):
    path = quantized(tmp_path / "quantized.pt", whole)
    line = _refused(capsys, path, tmp_path / "out", *(["--trust-checkpoint"] if trust else []))
    assert "is a dynamically quantized checkpoint (torch.ao.quantization.quantize_dynamic" in line
    assert line.endswith("extract from the float checkpoint it came from")


def test_a_pickled_encoder_on_its_own_gives_its_config_at_the_top(tmp_path):
    from extractor.resolve.config_sources import candidates

    encoder = tiny_encoder("deberta-v2", hidden_size=48, num_attention_heads=3)
    torch.save(encoder, tmp_path / "deberta.pt")
    ckpt = load_checkpoint(tmp_path / "deberta.pt")
    assert ckpt.location == "checkpoint.state_dict()"
    [found] = candidates(ckpt)
    assert found.where == "checkpoint.config"
    assert found.values["model_type"] == "deberta-v2"
    assert found.values["num_attention_heads"] == 3
    assert found.values["dtype"] in (None, "float32")  # torch.float32 read by its name
