"""Builders that write the files real projects write, with our own small code.

Each mirrors the saving code of the project it is named after (read at the
versions noted), producing the same file names, JSON structure and state-dict
keys; none of their code is used. Every builder returns the directory or file
a user would hand to the extractor and the encoder as the project held it
(the model our export must match, built from its *true* config).

- GLiNER 0.2.27 (`BaseGLiNER.save_pretrained`): `pytorch_model.bin` of the inner
  model (`token_rep_layer.bert_layer.model.` + backbone keys, projection, LSTM,
  span and prompt heads), `gliner_config.json` whose `encoder_config` is the
  backbone's full config with `vocab_size` after `resize_token_embeddings` for
  `[FLERT]`, `<<ENT>>`, `<<SEP>>`; `model_type` null; tokenizer files; no
  `config.json`.
- SpanMarker 1.8.1: `config.json` with `model_type: "span-marker"` and the
  encoder's full config under `encoder`; weights `encoder.` + `classifier.`;
  `<start>`/`<end>` added and the embeddings padded to a multiple of 8.
- sentence-transformers v2-v5: the Transformer saved in the root (`modules.json`
  path ""), `1_Pooling/`; v1 (0.3-1.2): `0_Transformer/` with `pytorch_model.bin`
  and a root `config.json` holding only `__version__`.
- OneIE (train.py): `torch.save({"model", "config", "vocabs", "valid"})`, the config
  a dict from `Config.to_dict()`, or in older files the pickled `config.Config`.
- Lightning 2.x `save_checkpoint`: `state_dict` with the attribute name as prefix,
  `hyper_parameters`, loops, optimizer states.
"""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from transformers import AutoTokenizer, BertModel, PreTrainedModel

from extractor.parity import ParityCase, case_inputs
from tests.builders.tiny_encoders import tiny_encoder

GLINER_TOKENS = ["[FLERT]", "<<ENT>>", "<<SEP>>"]
SHAPES = (ParityCase("batch 1", 1, 7, False), ParityCase("padded", 2, 40, True),
          ParityCase("padded, short", 3, 13, True))


def assert_matches(onnx_path: Path, encoder: PreTrainedModel, atol: float = 1e-4) -> float:
    """The ONNX file gives the encoder's last_hidden_state at three shapes, on real tokens;
    returns the largest difference seen."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    for case in SHAPES:
        feeds = case_inputs(encoder.config, names, case)
        with torch.no_grad():
            want = encoder(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        got = session.run(["last_hidden_state"], feeds)[0]
        real = feeds.get("attention_mask", np.ones(got.shape[:2])).astype(bool)  # FNet: no mask
        diff = np.abs(got - want.last_hidden_state.numpy())[real].max()
        assert diff <= atol, f"{case.name}: max abs {diff:.2e}"
        worst = max(worst, float(diff))
    return worst


def minilm(minilm_dir: Path) -> BertModel:
    return BertModel.from_pretrained(minilm_dir, local_files_only=True).eval()


def _added_tokens(minilm_dir: Path, tokens: list[str]):
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir, local_files_only=True)
    tokenizer.add_tokens(tokens, special_tokens=True)
    return tokenizer


def gliner(
    directory: Path, minilm_dir: Path, backbone: str = "bert"
) -> tuple[Path, PreTrainedModel]:
    """A GLiNER span model directory with a BERT (MiniLM weights) or DeBERTa-v3 backbone."""
    directory.mkdir(parents=True)
    tokenizer = _added_tokens(minilm_dir, GLINER_TOKENS)
    if backbone == "bert":
        encoder = minilm(minilm_dir)
    else:  # a tiny DeBERTa-v3 (GLiNER's default backbone family), random weights
        encoder = tiny_encoder("deberta-v2", vocab_size=30522, hidden_size=48,
                               num_attention_heads=6, intermediate_size=96)
    encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    encoder.config.vocab_size = len(tokenizer)
    hidden = encoder.config.hidden_size
    width = 512  # GLiNER's default hidden size: a projection follows the backbone
    state = {f"token_rep_layer.bert_layer.model.{k}": v for k, v in encoder.state_dict().items()}
    state["token_rep_layer.projection.weight"] = torch.randn(width, hidden) * 0.02
    state["token_rep_layer.projection.bias"] = torch.zeros(width)
    lstm = torch.nn.LSTM(width, width // 2, bidirectional=True, batch_first=True)
    state.update({f"rnn.lstm.{k}": v for k, v in lstm.state_dict().items()})
    for part, fan_in in (("project_start", width), ("project_end", width),
                         ("out_project", 2 * width)):
        state[f"span_rep_layer.span_rep_layer.{part}.0.weight"] = torch.randn(4 * width, fan_in)
        state[f"span_rep_layer.span_rep_layer.{part}.0.bias"] = torch.zeros(4 * width)
        state[f"span_rep_layer.span_rep_layer.{part}.3.weight"] = torch.randn(width, 4 * width)
        state[f"span_rep_layer.span_rep_layer.{part}.3.bias"] = torch.zeros(width)
    state["prompt_rep_layer.0.weight"] = torch.randn(4 * width, width)
    state["prompt_rep_layer.0.bias"] = torch.zeros(4 * width)
    state["prompt_rep_layer.3.weight"] = torch.randn(width, 4 * width)
    state["prompt_rep_layer.3.bias"] = torch.zeros(width)
    torch.save(state, directory / "pytorch_model.bin")
    encoder_config = encoder.config.to_dict()
    encoder_config.pop("transformers_version", None)  # nested configs drop it
    name = "microsoft/deberta-v3-small" if backbone != "bert" else "sentence-transformers/x"
    config = {
        "class_token_index": len(tokenizer) - 2, "dropout": 0.4, "embed_ent_token": True,
        "encoder_config": encoder_config, "ent_token": "<<ENT>>", "fine_tune": True,
        "fuse_layers": False, "hidden_size": width, "id_to_classes": None, "max_len": 384,
        "max_neg_type_ratio": 1, "max_types": 25, "max_width": 12, "model_name": name,
        "model_type": None, "name": "gliner", "neg_spans_ratio": 1.0,
        "num_post_fusion_layers": 1, "num_rnn_layers": 1, "post_fusion_schema": "",
        "precomputed_prompts_mode": None, "represent_spans": False, "sep_token": "<<SEP>>",
        "span_loss_coef": 1.0, "span_mode": "markerV0", "subtoken_pooling": "first",
        "token_loss_coef": 1.0, "transformers_version": "5.24.0",
        "vocab_size": len(tokenizer), "words_splitter_type": "whitespace",
    }
    (directory / "gliner_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    tokenizer.save_pretrained(directory)
    return directory, encoder


def span_marker(directory: Path, minilm_dir: Path) -> tuple[Path, PreTrainedModel]:
    directory.mkdir(parents=True)
    tokenizer = _added_tokens(minilm_dir, ["<start>", "<end>"])
    encoder = minilm(minilm_dir)
    rows = math.ceil(len(tokenizer) / 8) * 8
    encoder.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=8, mean_resizing=False)
    encoder.config.vocab_size = rows
    hidden = encoder.config.hidden_size
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state["classifier.weight"] = torch.randn(3, 2 * hidden)
    state["classifier.bias"] = torch.zeros(3)
    torch.save(state, directory / "pytorch_model.bin")
    labels = {"0": "O", "1": "B-PER", "2": "I-PER", "3": "B-LOC", "4": "I-LOC"}
    nested = {**encoder.config.to_dict(), "id2label": labels,
              "label2id": {v: int(k) for k, v in labels.items()},
              "_name_or_path": "sentence-transformers/all-MiniLM-L6-v2",
              "transformers_version": "4.57.6"}
    config = {
        "architectures": ["SpanMarkerModel"], "dtype": "float32", "encoder": nested,
        "entity_max_length": 4, "id2label": {"0": "O", "1": "LOC", "2": "PER"},
        "id2reduced_id": {"0": 0, "1": 2, "2": 2, "3": 1, "4": 1},
        "label2id": {"LOC": 1, "O": 0, "PER": 2}, "marker_max_length": 16,
        "max_next_context": None, "max_prev_context": None, "model_max_length": 64,
        "model_max_length_default": 512, "model_type": "span-marker",
        "span_marker_version": "1.8.1", "trained_with_document_context": False,
        "transformers_version": "4.57.6", "vocab_size": rows,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    tokenizer.save_pretrained(directory)
    (directory / "README.md").write_text("---\nlibrary_name: span-marker\n---\n")
    return directory, encoder


def _pooling(directory: Path, width: int) -> None:
    (directory / "1_Pooling").mkdir()
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": width, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}, indent=4))


def sentence_transformer(
    directory: Path, encoder: PreTrainedModel, tokenizer_dir: Path | None
) -> Path:
    """The v2-v5 layout: the Transformer module in the root."""
    directory.mkdir(parents=True)
    encoder.save_pretrained(directory)
    if tokenizer_dir is not None:
        AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True).save_pretrained(
            directory)
    (directory / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"}], indent=2))
    (directory / "2_Normalize").mkdir()
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 128, "do_lower_case": False}, indent=4))
    (directory / "config_sentence_transformers.json").write_text(json.dumps({
        "__version__": {"sentence_transformers": "5.1.0", "transformers": "4.57.6",
                        "pytorch": "2.8.0"},
        "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2))
    _pooling(directory, encoder.config.hidden_size)
    return directory


def sentence_transformer_v1(directory: Path, minilm_dir: Path) -> tuple[Path, PreTrainedModel]:
    """sentence-transformers 0.3-1.2: `0_Transformer/` with pytorch_model.bin."""
    encoder = minilm(minilm_dir)
    module = directory / "0_Transformer"
    module.mkdir(parents=True)
    encoder.config.save_pretrained(module)  # transformers 5 writes only safetensors itself
    torch.save(encoder.state_dict(), module / "pytorch_model.bin")
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (module / name).write_bytes((minilm_dir / name).read_bytes())
    (module / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 128, "do_lower_case": False}, indent=2))
    (directory / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer",
         "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"}], indent=2))
    (directory / "config.json").write_text(json.dumps({"__version__": "1.2.0"}, indent=2))
    _pooling(directory, encoder.config.hidden_size)
    return directory, encoder


def oneie_state(encoder: PreTrainedModel) -> dict[str, torch.Tensor]:
    """OneIE's state dict: `bert.` beside its heads, in its registration order."""
    hidden = encoder.config.hidden_size
    state = {"global_feature_weights": torch.full((11,), -1e-4),
             "pad_vector": torch.randn(1, 1, hidden)}
    state.update({f"bert.{k}": v for k, v in encoder.state_dict().items()})
    for name, labels in (("entity_label_ffn", 7), ("trigger_label_ffn", 9)):
        state[f"{name}.weight"] = torch.randn(labels, hidden)
        state[f"{name}.bias"] = torch.zeros(labels)
    for name, fan_in, width, out in (("entity_type_ffn", hidden, 150, 8),
                                     ("mention_type_ffn", hidden, 150, 4),
                                     ("event_type_ffn", hidden, 600, 34),
                                     ("relation_type_ffn", 2 * hidden, 150, 7),
                                     ("role_type_ffn", 2 * hidden, 600, 23)):
        state[f"{name}.layers.0.weight"] = torch.randn(width, fan_in)
        state[f"{name}.layers.0.bias"] = torch.zeros(width)
        state[f"{name}.layers.1.weight"] = torch.randn(out, width)
        state[f"{name}.layers.1.bias"] = torch.zeros(out)
    state["entity_crf.transition"] = torch.randn(9, 9)
    state["trigger_crf.transition"] = torch.randn(11, 11)
    return state


ONEIE_CONFIG = dict(
    coref=True, bert_cache_dir=None, extra_bert=-1, use_extra_bert=False,
    use_global_features=False, global_features=[], multi_piece_strategy="first",
    bert_dropout=0.5, linear_dropout=0.4, linear_bias=True, linear_activation="relu",
    entity_hidden_num=150, mention_hidden_num=150, event_hidden_num=600,
    relation_hidden_num=150, role_hidden_num=600, use_entity_type=False, beam_size=5,
    beta_v=2, beta_e=2, relation_mask_self=True, relation_directional=False,
    symmetric_relations={"PER-SOC"}, batch_size=10, eval_batch_size=5, max_epoch=50,
    learning_rate=1e-3, bert_learning_rate=1e-5, weight_decay=0.001, bert_weight_decay=1e-5,
    warmup_epoch=5, grad_clipping=5.0, use_gpu=True, gpu_device=-1,
)
_VOCABS = {
    "entity_type": {"O": 0, "PER": 1, "ORG": 2}, "event_type": {"O": 0, "Attack": 1},
    "relation_type": {"O": 0, "PER-SOC": 1}, "role_type": {"O": 0, "Attacker": 1},
    "mention_type": {"NAM": 0, "NOM": 1, "PRO": 2, "UNK": 3},
    "entity_label": {"O": 0, "B-PER": 1, "I-PER": 2}, "trigger_label": {"O": 0, "B-Attack": 1},
}
_VALID = {"event_role": {101}, "relation_entity": {102}, "role_entity": {101}}


def oneie(path: Path, encoder: PreTrainedModel, bert_model_name: str,
          config_object: bool = False) -> Path:
    """OneIE's best.role.mdl; with `config_object` the older pickled `config.Config`."""
    config: Any = {**ONEIE_CONFIG, "bert_model_name": bert_model_name}
    if config_object:
        config = _pickled_config_object(path.parent, config)
    torch.save({"model": oneie_state(encoder), "config": config, "vocabs": _VOCABS,
                "valid": _VALID}, path)
    sys.modules.pop("config", None)  # the loader must not find OneIE's source
    return path


def _pickled_config_object(directory: Path, values: dict[str, Any]) -> Any:
    """An instance of a class `Config` in module `config`, OneIE's own, importable only
    while it is written (as when OneIE's train.py ran)."""
    source = directory / "oneie_src"
    source.mkdir(exist_ok=True)
    (source / "config.py").write_text(textwrap.dedent("""
        class Config(object):
            def __init__(self, **kwargs):
                self.__dict__.update(kwargs)
    """))
    sys.path.insert(0, str(source))
    try:
        import config as oneie_config  # noqa: PLC0415 (the project's own module name)

        return oneie_config.Config(**values)
    finally:
        sys.path.remove(str(source))


def lightning(path: Path, encoder: PreTrainedModel, hyper_parameters: dict[str, Any]) -> Path:
    """What `Trainer.save_checkpoint` writes for a module with `self.encoder` and a head."""
    hidden = encoder.config.hidden_size
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state["classifier.weight"] = torch.randn(3, hidden)
    state["classifier.bias"] = torch.zeros(3)
    progress = {"total": {"ready": 1, "completed": 1}, "current": {"ready": 1, "completed": 1}}
    torch.save({
        "epoch": 1, "global_step": 1, "pytorch-lightning_version": "2.6.6",
        "state_dict": state,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": progress,
                               "epoch_loop.state_dict": {"_batches_that_stepped": 1}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': None, 'mode': 'min'}": {"best_model_score": None}
        },
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": hyper_parameters,
    }, path)
    return path


def hf_snapshot(root: Path, name: str) -> Path:
    """The empty snapshot folder of `name` in a local Hugging Face cache at `root`, with
    the `refs/main` that points the cache at it; the caller writes the files into it."""
    repo = root / f"models--{name.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    return snapshot


def hf_cache(root: Path, name: str, source: Path) -> Path:
    """A local Hugging Face cache holding `name`'s config and tokenizer (as after a
    `from_pretrained` on a machine that was online once)."""
    snapshot = hf_snapshot(root, name)
    for file in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        if (source / file).is_file():
            (snapshot / file).write_bytes((source / file).read_bytes())
    return root
