"""Find the encoder inside a composite state dict by its key prefixes.

An encoder subtree is a prefix `P` with `P + "embeddings.word_embeddings.weight"`
and a first transformer layer under it. Without `--prefix` the one such subtree
is chosen; zero or several is a question for the user, never a guess.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .checkpoint import StateDict
from .errors import PrefixError

_WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
_BERT_LAYER0 = "encoder.layer.0.attention.self.query.weight"
_DISTILBERT_LAYER0 = "transformer.layer.0.attention.q_lin.weight"
_LISTED_DEPTH = 2


@dataclass(frozen=True)
class PrefixInfo:
    """One row of the prefix listing."""

    prefix: str
    tensors: int
    parameters: int
    dtypes: tuple[str, ...]
    architecture: str | None  # the model type an encoder subtree looks like


def encoder_prefixes(state_dict: StateDict) -> list[str]:
    """Every prefix under which a BERT-style encoder's weights sit."""
    found = []
    for key in state_dict:
        if key.endswith(_WORD_EMBEDDINGS):
            prefix = key[: -len(_WORD_EMBEDDINGS)]
            if guess_model_type(state_dict, prefix) is not None:
                found.append(prefix)
    return sorted(found)


def guess_model_type(state_dict: StateDict, prefix: str) -> str | None:
    """The Hugging Face `model_type` the weights under `prefix` look like, or None."""
    if prefix + _DISTILBERT_LAYER0 in state_dict:
        return "distilbert"
    if prefix + _BERT_LAYER0 not in state_dict or prefix + _WORD_EMBEDDINGS not in state_dict:
        return None
    if prefix + "embeddings_project.weight" in state_dict:
        return "electra"
    name = prefix.lower()
    for hint in ("xlm-roberta", "xlm_roberta", "roberta", "electra", "camembert"):
        if hint.replace("-", "_") in name.replace("-", "_"):
            return hint.replace("_", "-")
    vocab = state_dict[prefix + _WORD_EMBEDDINGS].shape[0]
    type_vocab_key = prefix + "embeddings.token_type_embeddings.weight"
    positions_key = prefix + "embeddings.position_embeddings.weight"
    if type_vocab_key in state_dict and positions_key in state_dict:
        # RoBERTa-style models have one token type and padding_idx + 1 extra position rows.
        extra = state_dict[positions_key].shape[0] - 2
        if state_dict[type_vocab_key].shape[0] == 1 and extra > 0 and extra & (extra - 1) == 0:
            return "xlm-roberta" if vocab >= 250_000 else "roberta"
    return "bert"


def prefix_summary(state_dict: StateDict) -> list[PrefixInfo]:
    """Rows for `--list`: prefixes two levels deep, each encoder and its children."""
    encoders = encoder_prefixes(state_dict)
    wanted: set[str] = set()
    for key in state_dict:
        parts = key.split(".")
        if len(parts) == 1:
            wanted.add(key)
        for depth in range(1, min(len(parts), _LISTED_DEPTH + 1)):
            wanted.add(".".join(parts[:depth]) + ".")
    for encoder in encoders:
        wanted.add(encoder)
        for key in state_dict:
            if key.startswith(encoder) and "." in key[len(encoder) :]:
                wanted.add(encoder + key[len(encoder) :].split(".")[0] + ".")
    wanted.discard("")
    return [_info(state_dict, prefix, encoders) for prefix in sorted(wanted)]


def _info(state_dict: StateDict, prefix: str, encoders: list[str]) -> PrefixInfo:
    tensors = [v for k, v in state_dict.items() if k == prefix or k.startswith(prefix)]
    dtypes = tuple(sorted({str(t.dtype).removeprefix("torch.") for t in tensors}))
    architecture = guess_model_type(state_dict, prefix) if prefix in encoders else None
    return PrefixInfo(prefix, len(tensors), sum(t.numel() for t in tensors), dtypes, architecture)


def choose_prefix(state_dict: StateDict, prefix: str | None) -> str:
    """Validate the user's prefix, or pick the single encoder subtree.

    Raises:
        PrefixError: the prefix matches nothing (with the closest ones), or no
            prefix was given and there is not exactly one encoder.
    """
    if prefix is None:
        encoders = encoder_prefixes(state_dict)
        if len(encoders) == 1:
            return encoders[0]
        if not encoders:
            raise PrefixError(
                "no transformer encoder found in the state dict; see --list "
                "and pass --prefix (and --config for unusual architectures)"
            )
        names = ", ".join(repr(p) for p in encoders)
        raise PrefixError(f"several encoders found ({names}); choose one with --prefix")
    if prefix and not prefix.endswith(".") and any(k.startswith(prefix + ".") for k in state_dict):
        prefix += "."
    if not any(k.startswith(prefix) for k in state_dict):
        close = closest_prefixes(state_dict, prefix)
        hint = f"; closest: {', '.join(repr(p) for p in close)}" if close else ""
        raise PrefixError(f"no tensors under prefix {prefix!r}{hint}")
    return prefix


def closest_prefixes(state_dict: StateDict, prefix: str, n: int = 3) -> list[str]:
    candidates = {
        ".".join(key.split(".")[:depth]) + "."
        for key in state_dict
        for depth in range(1, min(key.count(".") + 1, 4))
    }
    close = difflib.get_close_matches(prefix, sorted(candidates), n=n, cutoff=0.4)
    return close or sorted(encoder_prefixes(state_dict))[:n]
