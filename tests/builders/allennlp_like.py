"""AllenNLP model archives (DyGIE++ and any AllenNLP model), written by our own small code.

Follows allennlp 2.10 `models/archival.py::archive_model`: a gzipped tar with
`config.json` (the training config, as `Params` writes it), `weights.th`
(`torch.save(model.state_dict())`), `vocabulary/` (one file per namespace plus
`non_padded_namespaces.txt`) and `meta.json`; a serialization folder holds the same
config.json beside `best.th`. State-dict keys follow the modules AllenNLP builds:
`BasicTextFieldEmbedder` adds each token embedder as `token_embedder_<key>`;
`PretrainedTransformerMismatchedEmbedder` holds a `PretrainedTransformerEmbedder` as
`_matched_embedder`, which holds `AutoModel.from_pretrained(model_name)` as
`transformer_model`. DyGIE++ (dwadden/dygiepp, `training_config/template.libsonnet`,
`dygie/models/dygie.py`) keeps the embedder as `_embedder` and names it `bert`; a
`basic_classifier` keeps it as `_text_field_embedder` with the plain embedder.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import torch

MISMATCHED = "pretrained_transformer_mismatched"
PLAIN = "pretrained_transformer"


def dygie_config(model_name: str, embedder: str = MISMATCHED) -> dict[str, Any]:
    """The config.json DyGIE++'s template renders (trimmed to what shapes the files)."""
    token = {"type": embedder, "model_name": model_name, "max_length": 512}
    return {
        "dataset_reader": {"type": "dygie", "max_span_width": 8, "token_indexers": {
            "bert": {"type": embedder, "model_name": model_name, "max_length": 512}}},
        "train_data_path": "data/ace05/train.json",
        "validation_data_path": "data/ace05/dev.json",
        "model": {
            "type": "dygie",
            "text_field_embedder": {"token_embedders": {"bert": token}},
            "feature_size": 20, "max_span_width": 8, "target_task": "ner",
            "feedforward_params": {"num_layers": 2, "hidden_dims": 150, "dropout": 0.4},
            "loss_weights": {"ner": 1.0, "relation": 0.0, "coref": 0.0, "events": 0.0},
            "modules": {"ner": {}, "relation": {"spans_per_word": 0.5}},
        },
        "data_loader": {"type": "ie_batch", "batch_size": 1},
        "trainer": {"num_epochs": 25, "cuda_device": -1, "optimizer": {"type": "adamw",
                                                                     "lr": 1e-3}},
    }


def classifier_config(model_name: str, **embedder: Any) -> dict[str, Any]:
    """A `basic_classifier` over a plain pretrained_transformer embedder."""
    return {
        "dataset_reader": {"type": "text_classification_json", "tokenizer": {
            "type": PLAIN, "model_name": model_name}},
        "model": {"type": "basic_classifier", "text_field_embedder": {"token_embedders": {
            "tokens": {"type": PLAIN, "model_name": model_name, **embedder}}},
            "seq2vec_encoder": {"type": "bert_pooler", "pretrained_model": model_name}},
        "trainer": {"num_epochs": 3},
    }


def dygie_state(encoder: torch.nn.Module, embedder: str = MISMATCHED) -> dict[str, torch.Tensor]:
    """DyGIE++'s state dict: the transformer under `_embedder.token_embedder_bert.`, beside
    span-width embeddings and the NER scorer."""
    inner = "_matched_embedder.transformer_model." if embedder == MISMATCHED else \
        "transformer_model."
    state = {f"_embedder.token_embedder_bert.{inner}{k}": v
             for k, v in encoder.state_dict().items()}
    width = encoder.config.hidden_size
    state["_endpoint_span_extractor._span_width_embedding.weight"] = torch.randn(8, 20)
    state["_ner._ner_scorers.ace05__ner_labels.0._module._linear_layers.0.weight"] = \
        torch.randn(150, 2 * width + 20)
    state["_ner._ner_scorers.ace05__ner_labels.0._module._linear_layers.0.bias"] = \
        torch.randn(150)
    state["_ner._ner_scorers.ace05__ner_labels.1.weight"] = torch.randn(8, 150)
    return state


def classifier_state(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = {f"_text_field_embedder.token_embedder_tokens.transformer_model.{k}": v
             for k, v in encoder.state_dict().items()}
    state["_classification_layer.weight"] = torch.randn(3, encoder.config.hidden_size)
    state["_classification_layer.bias"] = torch.randn(3)
    return state


def serialization_dir(directory: Path, config: dict[str, Any],
                      state: dict[str, torch.Tensor]) -> Path:
    """What training leaves: config.json, best.th, vocabulary/ (and epoch files)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=4))
    torch.save(state, directory / "best.th")
    vocabulary = directory / "vocabulary"
    vocabulary.mkdir(exist_ok=True)
    (vocabulary / "non_padded_namespaces.txt").write_text("*tags\n*labels\n")
    (vocabulary / "ner_labels.txt").write_text("PER\nORG\nLOC\n")
    (directory / "meta.json").write_text(json.dumps({"version": "2.10.1"}))
    return directory


def archive(directory: Path, config: dict[str, Any], state: dict[str, torch.Tensor],
            name: str = "model.tar.gz") -> Path:
    """`archive_model`: the serialization folder's files, best.th as weights.th."""
    source = serialization_dir(directory / "serialization", config, state)
    path = directory / name
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source / "config.json", arcname="config.json")
        tar.add(source / "best.th", arcname="weights.th")
        tar.add(source / "vocabulary", arcname="vocabulary")
        tar.add(source / "meta.json", arcname="meta.json")
    return path


def hostile_archive(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    """A gzipped tar with the given members: (name, bytes) files or bare TarInfo entries
    (links, devices, names that escape)."""
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path
