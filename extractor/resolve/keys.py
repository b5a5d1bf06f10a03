"""Compare a checkpoint's weights with the parameters a model builds, key by key.

One comparison serves every caller (choosing a config, loading the weights): every
missing key, unexpected key and shape mismatch is collected at once. A parameter
shared under several names (T5's `shared` and `encoder.embed_tokens`) is present
when any of its names is, a pooler may be absent, and the buffers transformers 4.x
saved (`BENIGN_EXTRA`) are tolerated and listed, never hidden.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Buffers transformers 4.x wrote into state dicts; 3.x and 5.x rebuild them, so they are ignored.
BENIGN_EXTRA = {
    "embeddings.position_ids": "position-id buffer saved by transformers 4.x; rebuilt by the model",
    "embeddings.token_type_ids": "token-type buffer saved by transformers 4.x; rebuilt by model",
}
POOLER = "pooler."


@dataclass
class KeyReport:
    """How the stripped weights matched the fresh model."""

    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list
    )
    tolerated: list[tuple[str, str]] = field(default_factory=list)  # (key or group, reason)
    converted_dtype: str | None = None  # e.g. "float16 -> float32"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatches)

    def rows(self) -> list[tuple[str, str, str]]:
        """(status, key, detail) rows for one table, problems first."""
        rows = [("missing", k, "in the model, not in the checkpoint") for k in self.missing]
        rows += [("unexpected", k, "in the checkpoint, not in the model") for k in self.unexpected]
        rows += [
            ("shape", k, f"checkpoint {list(got)} vs model {list(want)}")
            for k, got, want in self.shape_mismatches
        ]
        rows += [("tolerated", k, reason) for k, reason in self.tolerated]
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "loaded": self.loaded,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "shape_mismatches": [
                {"key": k, "checkpoint": list(g), "model": list(w)}
                for k, g, w in self.shape_mismatches
            ],
            "tolerated": [{"key": k, "reason": r} for k, r in self.tolerated],
            "converted_dtype": self.converted_dtype,
        }


def tied_names(expected: Mapping[str, Any]) -> dict[str, list[str]]:
    """For each parameter shared under several names, the other names.

    Args:
        expected: a model's `state_dict(keep_vars=True)` (shared tensors are one object).
    """
    owners: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        owners.setdefault(id(tensor), []).append(name)
    return {n: [o for o in group if o != n] for group in owners.values() if len(group) > 1
            for n in group}


def compare_keys(expected: Mapping[str, Any], state_dict: Mapping[str, Any], *,
                 optional: tuple[str, ...] = ()) -> KeyReport:
    """Every key of `expected` the weights lack, every weight it lacks, every other shape.

    Args:
        expected: the model's `state_dict(keep_vars=True)`, so tied names are known.
        state_dict: the weights, or anything with a `shape` under each name.
        optional: prefixes of keys that may be missing (`POOLER`: a model can be built
            without its pooler).

    Returns:
        A report in `expected`'s order (unexpected keys in the weights' order), with the
        `BENIGN_EXTRA` buffers the weights hold as tolerated.
    """
    tied = tied_names(expected)
    report = KeyReport()
    report.missing = [
        k for k in expected
        if k not in state_dict and not k.startswith(optional)
        and not any(other in state_dict for other in tied.get(k, ()))
    ]
    for key in state_dict:
        if key in BENIGN_EXTRA and key not in expected:
            report.tolerated.append((key, BENIGN_EXTRA[key]))
        elif key not in expected:
            report.unexpected.append(key)
    report.shape_mismatches = [
        (k, tuple(state_dict[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    return report

