"""Encoders fine-tuned with LoRA (PEFT), saved the ways their users save them.

PEFT's own code wraps a tiny BERT (`get_peft_model`); lora_B starts at zero in PEFT, so
it is set to random values here (as training would leave it). Two layouts:
- unmerged inside a composite checkpoint: `peft_model.state_dict()` under the project's
  attribute (`encoder.base_model.model.<...>.base_layer.weight`, `lora_A.default.weight`,
  `lora_embedding_A.default`), beside task heads, with the adapter's adapter_config.json
  and the encoder's config.json beside the checkpoint;
- an adapter folder (`peft_model.save_pretrained`): adapter_config.json naming the base
  in `base_model_name_or_path` and adapter_model.safetensors; the base saved apart.
The truth each returns is PEFT's own `merge_and_unload()`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertModel, PreTrainedModel

# Heads that widths cannot tell: 48 wide with 3 heads of 16.
TINY = dict(vocab_size=99, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
            intermediate_size=37, max_position_embeddings=64)
TARGETS = ["query", "value", "dense", "word_embeddings"]


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    model = BertModel(BertConfig(**TINY)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def peft_bert(seed: int = 0, **lora: Any):
    """A PEFT-wrapped tiny BERT whose LoRA matrices are all non-zero (a trained adapter)."""
    from peft import LoraConfig, get_peft_model

    base = tiny_bert(seed)
    settings = dict(r=4, lora_alpha=8, target_modules=TARGETS, lora_dropout=0.0)
    model = get_peft_model(base, LoraConfig(**{**settings, **lora})).eval()
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.3)
    return model


def merged(peft_model) -> PreTrainedModel:
    """PEFT's own merge of the adapter into its base (the truth to match)."""
    import copy

    return copy.deepcopy(peft_model).merge_and_unload().eval()


def adapter_config(peft_model) -> dict[str, Any]:
    values = peft_model.peft_config["default"].to_dict()
    return json.loads(json.dumps(values, default=list))  # sets (target_modules) as lists


def composite(directory: Path, peft_model, *, with_adapter_config: bool = True,
              prefix: str = "encoder.") -> Path:
    """A Lightning-style checkpoint: the unmerged PEFT encoder under `prefix` with a
    classifier head; config.json (the encoder's) and adapter_config.json beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {prefix + k: v for k, v in peft_model.state_dict().items()}
    state["classifier.weight"] = torch.randn(5, TINY["hidden_size"])
    state["classifier.bias"] = torch.randn(5)
    path = directory / "epoch=3-step=120.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"lr": 2e-4, "lora_r": 4},
                "epoch": 3}, path)
    (directory / "config.json").write_text(json.dumps(peft_model.base_model.model.config
                                                      .to_dict()))
    if with_adapter_config:
        (directory / "adapter_config.json").write_text(json.dumps(adapter_config(peft_model)))
    return path


def adapter_folder(directory: Path, peft_model, base_name: str | None) -> Path:
    """`peft_model.save_pretrained(directory)` with `base_model_name_or_path` = base_name."""
    peft_model.peft_config["default"].base_model_name_or_path = base_name
    # Without save_embedding_layers=False PEFT looks the base up (on the Hub, for a name)
    # to see whether its vocabulary grew; the files it writes are the same here.
    peft_model.save_pretrained(directory, save_embedding_layers=False)
    return directory


def base_folder(directory: Path, peft_model) -> Path:
    """The base model as `from_pretrained` would find it: its unadapted weights."""
    import copy

    copy.deepcopy(peft_model).unload().save_pretrained(directory)
    return directory
