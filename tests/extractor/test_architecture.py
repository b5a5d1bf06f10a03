from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel

from extractor.architecture import attention_heads, builtin_config, config_problem, resolve_config
from extractor.checkpoint import Checkpoint
from extractor.errors import ArchitectureError

TINY = dict(
    vocab_size=99,
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=37,
    max_position_embeddings=64,
)


def _meta_weights(config) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return AutoModel.from_config(config).state_dict()


def _checkpoint(tmp_path: Path, extra: dict) -> Checkpoint:
    return Checkpoint(tmp_path / "model.bin", "torch-zip", {}, "checkpoint['model']", extra)


def _write_config(directory: Path, **values) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps({"model_type": "bert", **TINY, **values}))
    return path


def test_explicit_config_file_wins(tmp_path):
    weights = _meta_weights(AutoConfig.for_model("bert", **TINY))
    path = _write_config(tmp_path / "cfg")
    resolved = resolve_config(weights, _checkpoint(tmp_path, {}), config_file=path)
    assert (resolved.kind, resolved.config.num_attention_heads) == ("config-file", 3)
    assert not resolved.heads_guessed


def test_explicit_config_that_does_not_fit_is_an_error(tmp_path):
    weights = _meta_weights(AutoConfig.for_model("bert", **TINY))
    path = _write_config(tmp_path / "cfg", hidden_size=64, num_attention_heads=4)
    with pytest.raises(ArchitectureError, match="does not fit the weights: shape mismatch"):
        resolve_config(weights, config_file=path)


def test_model_directory_gives_config_and_tokenizer(minilm_dir):
    weights = _meta_weights(AutoConfig.from_pretrained(minilm_dir))
    resolved = resolve_config(weights, model=minilm_dir)
    assert resolved.kind == "model" and resolved.tokenizer_dir == minilm_dir
    assert resolved.config.num_attention_heads == 12


def test_hub_name_not_in_local_cache_says_so_and_downloads_nothing(tmp_path):
    weights = _meta_weights(AutoConfig.for_model("bert", **TINY))
    with pytest.raises(
        ArchitectureError, match="nor in the local Hugging Face cache.*nothing is downloaded"
    ):
        resolve_config(weights, model="someone/never-cached-model")


def test_hub_name_found_in_local_cache(tmp_path):
    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "abc123"
    _write_config(snapshot)
    (tmp_path / "hub" / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny" / "refs" / "main").write_text("abc123")
    weights = _meta_weights(AutoConfig.for_model("bert", **TINY))
    resolved = resolve_config(weights, model="acme/tiny", cache_dir=tmp_path / "hub")
    assert resolved.config.num_attention_heads == 3


def test_embedded_name_resolves_a_directory_beside_the_checkpoint(tmp_path):
    _write_config(tmp_path / "tiny-encoder")
    weights = _meta_weights(AutoConfig.for_model("bert", **TINY))
    ckpt = _checkpoint(tmp_path, {"config": {"bert_model_name": "tiny-encoder"}})
    resolved = resolve_config(weights, ckpt)
    assert resolved.kind == "embedded"
    assert resolved.source == "checkpoint['config']['bert_model_name']='tiny-encoder'"


def test_oneie_bert_large_cased_comes_from_the_builtin_table(tmp_path):
    weights = _meta_weights(builtin_config("bert-large-cased"))
    ckpt = _checkpoint(tmp_path, {"config": {"bert_model_name": "bert-large-cased"}})
    resolved = resolve_config(weights, ckpt)
    assert resolved.kind == "builtin"
    assert (resolved.config.hidden_size, resolved.config.num_attention_heads) == (1024, 16)


def test_embedded_name_that_disagrees_with_weights_is_rejected_with_reason(tmp_path):
    # OneIE's default name, but the weights are a tiny model: fall through to shapes.
    weights = _meta_weights(AutoConfig.for_model("bert", **TINY))
    ckpt = _checkpoint(tmp_path, {"config": {"bert_model_name": "bert-large-cased"}})
    resolved = resolve_config(weights, ckpt)
    assert resolved.kind == "inferred" and resolved.heads_guessed
    assert any("bert-large-cased" in r and "shape mismatch" in r for r in resolved.rejected)


def test_builtin_table_matches_by_shapes_without_a_name(minilm_dir):
    weights = _meta_weights(AutoConfig.from_pretrained(minilm_dir))
    resolved = resolve_config(weights)
    assert resolved.source.startswith("built-in table: sentence-transformers/all-MiniLM-L6-v2")
    assert resolved.config.num_attention_heads == 12 and not resolved.heads_guessed


@pytest.mark.parametrize(
    "model_type, values, heads",
    [
        ("bert", TINY, 3),  # hidden 48: head size 16 is the largest usual one that divides
        (
            "roberta",
            {
                **TINY,
                "hidden_size": 128,
                "num_attention_heads": 4,
                "type_vocab_size": 1,
                "max_position_embeddings": 66,
            },
            2,
        ),
        ("electra", {**TINY, "hidden_size": 64, "num_attention_heads": 4, "embedding_size": 16}, 1),
        (
            "distilbert",
            dict(
                vocab_size=99,
                dim=64,
                n_layers=2,
                n_heads=4,
                hidden_dim=37,
                max_position_embeddings=64,
            ),
            1,
        ),
    ],
)
def test_inference_from_shapes_guesses_heads_loudly(model_type, values, heads):
    weights = _meta_weights(AutoConfig.for_model(model_type, **values))
    resolved = resolve_config(weights)
    assert resolved.kind == "inferred" and resolved.heads_guessed
    assert resolved.config.model_type == model_type
    assert "GUESSED" in resolved.source
    assert attention_heads(resolved.config) == heads
    assert config_problem(resolved.config, weights) is None


def test_unknown_architecture_cannot_be_inferred():
    with pytest.raises(ArchitectureError, match="cannot infer the architecture"):
        resolve_config({"fc.weight": torch.zeros(3, 3)})
