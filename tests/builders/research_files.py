"""Files research code writes that hold an encoder in forms state-dict code does not expect.

- A whole pickled model: `torch.save(model)` of a project's own module class (here
  `Tagger`, pickled by reference to this module, as a project's class is) holding
  a transformers encoder under `bert` and its config object as `model.bert.config`.
- A Paddle conversion as UIE's `convert.py` (HeiHeiYoYo/uie_pytorch) writes it:
  `pytorch_model.bin` with the encoder under `encoder.`, LayerNorm parameters named
  `LayerNorm.gamma`/`LayerNorm.beta`, the pooler, and the `linear_start`/`linear_end`
  heads; `config.json` from PaddleNLP's ERNIE `init_args` with `architectures:
  ["UIE"]`, `layer_norm_eps` and `intermediate_size` set, and no `model_type`.
- A dynamically quantized BERT (`torch.ao.quantization.quantize_dynamic`), saved as a
  state dict or as the whole module.

Each builder returns the file a user would hand over and the encoder as the project
held it (built from its true config: the model the export must match).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from transformers import PreTrainedModel

from tests.builders.tiny_encoders import tiny_encoder

# Head counts no width says (48 / 3 = 16 per head; 48 / 64 is no count at all).
BERT_SIZES = dict(hidden_size=48, num_attention_heads=3, intermediate_size=64, vocab_size=97,
                  max_position_embeddings=64)


class Tagger(torch.nn.Module):
    """A research model: an encoder attribute beside its own head."""

    def __init__(self, encoder: PreTrainedModel, labels: int = 5) -> None:
        super().__init__()
        self.bert = encoder
        self.dropout = torch.nn.Dropout(0.1)
        self.classifier = torch.nn.Linear(encoder.config.hidden_size, labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids, attention_mask=attention_mask).last_hidden_state
        return self.classifier(self.dropout(hidden))


def whole_model(path: Path, model_type: str = "bert", **sizes: int) -> tuple[Path, PreTrainedModel]:
    """`torch.save(Tagger(encoder))`: the module, its submodules and configs in one pickle."""
    encoder = tiny_encoder(model_type, **{**BERT_SIZES, **sizes})
    torch.save(Tagger(encoder), path)
    return path, encoder


# PaddleNLP's ernie-3.0 init_args, small; UIE's convert.py adds the last three lines.
UIE_CONFIG = dict(
    attention_probs_dropout_prob=0.1, hidden_act="gelu", hidden_dropout_prob=0.1,
    hidden_size=48, initializer_range=0.02, max_position_embeddings=64,
    num_attention_heads=3, num_hidden_layers=2, task_type_vocab_size=3, type_vocab_size=4,
    use_task_id=True, vocab_size=97, pad_token_id=0,
    architectures=["UIE"], layer_norm_eps=1e-12, intermediate_size=4 * 48,
)


def uie(directory: Path) -> tuple[Path, PreTrainedModel]:
    """The directory UIE's convert.py writes, for a tiny ERNIE."""
    values = {k: v for k, v in UIE_CONFIG.items() if k != "architectures"}
    encoder = tiny_encoder("ernie", **values)
    directory.mkdir(parents=True)
    state = {f"encoder.{legacy_layer_norm(k)}": v for k, v in encoder.state_dict().items()}
    hidden = encoder.config.hidden_size
    for head in ("linear_start", "linear_end"):
        state[f"{head}.weight"] = torch.randn(1, hidden)
        state[f"{head}.bias"] = torch.zeros(1)
    torch.save(state, directory / "pytorch_model.bin")
    (directory / "config.json").write_text(json.dumps(UIE_CONFIG, indent=4))
    return directory, encoder


def legacy_layer_norm(key: str) -> str:
    """`...LayerNorm.weight` -> `...LayerNorm.gamma`, `...LayerNorm.bias` -> `...beta`."""
    return key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                      "LayerNorm.beta")


def quantized(path: Path, whole: bool = False) -> Path:
    """A BERT after `quantize_dynamic` on its Linear layers: its state dict, or the module."""
    encoder = tiny_encoder("bert", **BERT_SIZES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's move to torchao
        model = torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear},
                                                       dtype=torch.qint8)
    torch.save(model if whole else model.state_dict(), path)
    return path
