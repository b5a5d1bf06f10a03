"""Gate a lower-precision model on real text: its embeddings must point where fp32's do.

Exact parity cannot hold in bf16 or int8, so each accuracy tier has a gate on
cosine similarity against fp32 PyTorch, per token (real tokens only) and per
mean-pooled sentence, on sentences tokenised with the model's own tokenizer:
`exact` is parity on real tokens (max abs <= 1e-4), `bf16` 0.9995 / 0.9999, `int8` 0.99 / 0.995.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

TOKEN_COSINE_MIN = 0.99
SENTENCE_COSINE_MIN = 0.995
EXACT_MAX_ABS = 1e-4  # the exact tier: parity on real tokens
# (token cosine, sentence cosine) each lower tier must reach, as means over the sentences.
GATES = {"bf16": (0.9995, 0.9999), "int8": (TOKEN_COSINE_MIN, SENTENCE_COSINE_MIN)}
TIERS = ("exact", "bf16", "int8")


@dataclass(frozen=True)
class Agreement:
    """How closely one model's embeddings follow fp32 PyTorch on real text."""

    file: str
    token_cosine_mean: float
    token_cosine_min: float
    sentence_cosine_mean: float
    sentence_cosine_min: float
    sentences: int
    max_abs: float = float("nan")  # on real tokens
    tier: str = "int8"

    @property
    def gate(self) -> dict[str, float]:
        if self.tier == "exact":
            return {"max_abs": EXACT_MAX_ABS}
        token, sentence = GATES[self.tier]
        return {"token_cosine_mean": token, "sentence_cosine_mean": sentence}

    @property
    def ok(self) -> bool:
        if self.tier == "exact":
            return self.max_abs <= EXACT_MAX_ABS
        gate = self.gate
        return (self.token_cosine_mean >= gate["token_cosine_mean"]
                and self.sentence_cosine_mean >= gate["sentence_cosine_mean"])

    def clears(self, margin: tuple[float, float]) -> bool:
        """Whether the means pass the gate raised by `margin` (token, sentence)."""
        gate = self.gate
        return (self.token_cosine_mean >= gate["token_cosine_mean"] + margin[0]
                and self.sentence_cosine_mean >= gate["sentence_cosine_mean"] + margin[1])

    def tiers_met(self) -> list[str]:
        """Every tier whose gate these numbers pass, strictest first."""
        return [tier for tier in TIERS if replace(self, tier=tier).ok]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "gate": self.gate}


def agreement(
    onnx_path: str | Path, inputs: dict[str, np.ndarray], expected: np.ndarray,
    tier: str = "int8",
) -> Agreement:
    """Cosine similarity of `last_hidden_state` (onnxruntime) against fp32 PyTorch."""
    from .runtimes import onnxruntime_runner

    got = onnxruntime_runner(onnx_path)(inputs)
    return compare_embeddings(Path(onnx_path).name, got, expected, inputs["attention_mask"], tier)


def compare_embeddings(
    name: str, got: np.ndarray, expected: np.ndarray, attention_mask: np.ndarray,
    tier: str = "int8",
) -> Agreement:
    """Token and mean-pooled sentence cosine of any runtime's output against fp32."""
    return summarise(name, [cosines(got, expected, attention_mask)], tier)


def cosines(got: np.ndarray, expected: np.ndarray, attention_mask: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """Per real token and per mean-pooled sentence cosine, and max abs on real tokens."""
    got, want = got.astype(np.float64), expected.astype(np.float64)
    mask = attention_mask.astype(bool)
    tokens = _cosine(got[mask], want[mask])
    weights = mask[..., None]
    sentences = _cosine(
        (got * weights).sum(1) / weights.sum(1), (want * weights).sum(1) / weights.sum(1)
    )
    return tokens, sentences, float(np.abs(got - want)[mask].max())


def summarise(name: str, parts: list[tuple[np.ndarray, np.ndarray, float]],
              tier: str = "int8") -> Agreement:
    """One `Agreement` over the `cosines` of several batches (means over all of them)."""
    tokens = np.concatenate([p[0] for p in parts])
    sentences = np.concatenate([p[1] for p in parts])
    return Agreement(
        name,
        float(tokens.mean()),
        float(tokens.min()),
        float(sentences.mean()),
        float(sentences.min()),
        len(sentences),
        max(p[2] for p in parts),
        tier,
    )


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
