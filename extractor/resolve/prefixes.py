"""Find the encoder inside a composite state dict by its key prefixes.

A prefix is an encoder when the names under it are those of a model type
transformers builds (`encoders.find_encoders`), at any depth. Without
`--prefix` the one such subtree is chosen; zero or several is a question for
the user, never a guess.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..errors import PrefixError
from .encoders import EncoderMatch, find_encoders
from .state_dicts import StateDict

_LISTED_DEPTH = 2


@dataclass(frozen=True)
class PrefixInfo:
    """One row of the prefix listing."""

    prefix: str
    tensors: int
    parameters: int
    dtypes: tuple[str, ...]
    architecture: str | None  # an encoder subtree: its type, or "<type> layout" if shared
    model_types: tuple[str, ...] = ()  # every model type with this layout


def encoder_prefixes(state_dict: StateDict) -> list[str]:
    """Every prefix under which a transformer encoder's weights sit."""
    return [m.prefix for m in find_encoders(state_dict)]


def encoder_match(state_dict: StateDict, prefix: str) -> EncoderMatch | None:
    """What the weights under `prefix` are, if an encoder."""
    return next((m for m in find_encoders(state_dict) if m.prefix == prefix), None)


def prefix_summary(state_dict: StateDict) -> list[PrefixInfo]:
    """Rows for `--list`: prefixes two levels deep, each encoder (any depth) and its children."""
    encoders = {m.prefix: m for m in find_encoders(state_dict)}
    wanted: set[str] = set()
    for key in state_dict:
        parts = key.split(".")
        if len(parts) == 1:
            wanted.add(key)
        for depth in range(1, min(len(parts), _LISTED_DEPTH + 1)):
            wanted.add(".".join(parts[:depth]) + ".")
    for encoder in encoders:
        parts = encoder.split(".")[:-1]
        wanted.update(".".join(parts[:depth]) + "." for depth in range(1, len(parts) + 1))
        for key in state_dict:
            if key.startswith(encoder) and "." in key[len(encoder) :]:
                wanted.add(encoder + key[len(encoder) :].split(".")[0] + ".")
    wanted.discard("")
    wanted.discard(".")
    rows = [_info(state_dict, prefix, encoders.get(prefix)) for prefix in sorted(wanted)]
    if "" in encoders:  # the whole state dict is the encoder
        rows.insert(0, _info(state_dict, "", encoders[""]))
    return rows


def _info(state_dict: StateDict, prefix: str, match: EncoderMatch | None) -> PrefixInfo:
    tensors = [v for k, v in state_dict.items() if k == prefix or k.startswith(prefix)]
    dtypes = tuple(sorted({str(t.dtype).removeprefix("torch.") for t in tensors}))
    return PrefixInfo(
        prefix,
        len(tensors),
        sum(t.numel() for t in tensors),
        dtypes,
        match.layout if match else None,
        match.model_types if match else (),
    )


def choose_prefix(state_dict: StateDict, prefix: str | None) -> str:
    """Validate the user's prefix, or pick the single encoder subtree.

    Raises:
        PrefixError: the prefix matches nothing (with the closest ones), or no
            prefix was given and there is not exactly one encoder.
    """
    encoders = encoder_prefixes(state_dict)
    if prefix is None:
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
        close = closest_prefixes(state_dict, prefix, encoders)
        hint = f"; closest: {', '.join(repr(p) for p in close)}" if close else ""
        raise PrefixError(f"no tensors under prefix {prefix!r}{hint}")
    outer = [e for e in encoders if prefix.startswith(e) and prefix != e]
    if prefix not in encoders and outer:  # `bert.encoder.`: a part of BERT, not an encoder
        whole = outer[-1]
        use = f"--prefix {whole}" if whole else "no --prefix (the whole state dict is it)"
        raise PrefixError(f"prefix {prefix!r} is inside the encoder at {whole!r}, a part of it "
                          f"rather than a whole encoder: use {use}")
    return prefix


def closest_prefixes(state_dict: StateDict, prefix: str, encoders: list[str] | None = None,
                     n: int = 3) -> list[str]:
    """What the user may have meant: encoder subtrees first (closest first), then other
    prefixes that are not a part of an encoder (`bert.encoder.` is not one to follow)."""
    encoders = encoder_prefixes(state_dict) if encoders is None else encoders
    candidates = {
        ".".join(key.split(".")[:depth]) + "."
        for key in state_dict
        for depth in range(1, min(key.count(".") + 1, 4))
    }
    outside = sorted(c for c in candidates
                     if c in encoders or not any(c.startswith(e) for e in encoders))
    close = difflib.get_close_matches(prefix, outside, n=len(outside), cutoff=0.4)
    ranked = [p for p in close if p in encoders] + [p for p in close if p not in encoders]
    ranked += [p for p in sorted(encoders) if p not in ranked]  # every encoder is a candidate
    return ranked[:n]
