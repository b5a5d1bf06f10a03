"""What an export runs the model on: its text inputs by name, dummy sizes, and the wrapper.

Inputs are named after the model's own forward parameters and passed by keyword, so they
cannot be swapped; dummy sizes collide with no config dimension, so a frozen one is told.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import PreTrainedModel

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_BATCH_CANDIDATES = (3, 5, 7, 11, 13)
_SEQUENCE_CANDIDATES = (17, 19, 23, 29, 31, 37, 41, 43, 47)


class EncoderWrapper(torch.nn.Module):
    """Positional forward over named inputs, returning a flat tuple of outputs."""

    def __init__(self, model: PreTrainedModel, input_names: list[str], hidden_states: bool):
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.hidden_states = hidden_states

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(
            **dict(zip(self.input_names, inputs, strict=True)),
            output_hidden_states=self.hidden_states,
            return_dict=True,
        )
        result = [out.last_hidden_state]
        if getattr(out, "pooler_output", None) is not None:
            result.append(out.pooler_output)
        if self.hidden_states:
            result.extend(out.hidden_states)
        return tuple(result)


def input_names_for(model: PreTrainedModel) -> list[str]:
    """The text inputs the model's forward takes, in its own order."""
    params = list(inspect.signature(model.forward).parameters)
    names = [p for p in params if p in TEXT_INPUTS]
    if "token_type_ids" in names and getattr(model.config, "type_vocab_size", 2) <= 1:
        names.remove("token_type_ids")  # RoBERTa-style: one type, the model fills zeros itself
    return names


def output_names_for(model: PreTrainedModel, hidden_states: bool) -> list[str]:
    """The outputs the export wrapper returns, found by running the model on 1x4 tokens
    (whether a pooler output exists, and how many hidden states, differs by type)."""
    inputs = dummy_inputs(model.config, input_names_for(model), 1, 4)
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=hidden_states, return_dict=True)
    found = ["last_hidden_state"]
    if getattr(out, "pooler_output", None) is not None:
        found.append("pooler_output")
    if hidden_states:
        found += [f"hidden_states.{i}" for i in range(len(out.hidden_states))]
    return found


def choose_dummy_sizes(config: Any) -> tuple[int, int]:
    """Batch and sequence that are distinct, > 1 and equal to no config dimension."""
    taken = {v for v in config.to_dict().values() if isinstance(v, int) and not isinstance(v, bool)}
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", None)
    if hidden and heads:
        taken.add(hidden // heads)
    longest = (getattr(config, "max_position_embeddings", 512) or 512) - 2
    batch = next(b for b in _BATCH_CANDIDATES if b not in taken)
    sequence = next((s for s in _SEQUENCE_CANDIDATES if s not in taken and s <= longest), None)
    if sequence is None:
        raise ValueError(f"no free dummy sequence length below {longest}")
    return batch, sequence


def dummy_inputs(
    config: Any, input_names: list[str], batch: int, sequence: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random token ids (never the pad id) and a mask whose last row is padded."""
    generator = torch.Generator().manual_seed(seed)
    low = 3 if getattr(config, "pad_token_id", 0) in (0, 1, 2) else 0
    ids = torch.randint(low, config.vocab_size, (batch, sequence), generator=generator)
    mask = torch.ones(batch, sequence, dtype=torch.long)
    mask[-1, sequence // 2 :] = 0  # trace the padded-mask path, not the all-ones shortcut
    tensors = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros(batch, sequence, dtype=torch.long),
    }
    return {name: tensors[name] for name in input_names}
