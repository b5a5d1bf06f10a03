"""Encode many sentences with as little padding as possible.

A batch costs its longest sentence times its size. Sentences in input order
pad every batch to a long one; sorted by length, each batch holds sentences of
about the same length and the padding mostly goes. The results come back in
input order, each sentence's real tokens only, so sorting changes nothing but
the time (the attention mask already keeps padding out of every real token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


def encode(
    encoder: Callable[..., Any],
    tokenizer: Any,
    sentences: Sequence[str],
    batch_size: int = 32,
    sort_by_length: bool = True,
    max_length: int | None = None,
) -> list[torch.Tensor]:
    """Each sentence's token embeddings (`[tokens, hidden]`), in input order.

    Args:
        encoder: an `OnnxEncoder` (or the Hugging Face model it stands in for).
        tokenizer: the model's tokenizer (`AutoTokenizer.from_pretrained(output_dir)`).
        sort_by_length: batch sentences of similar length together (default).
        max_length: truncate longer sentences (default: the tokenizer's limit).
    """
    encoded = tokenizer(list(sentences), truncation=True, max_length=max_length)
    return encode_ids(encoder, encoded["input_ids"], batch_size, sort_by_length,
                      pad_id=tokenizer.pad_token_id or 0)


def encode_ids(
    encoder: Callable[..., Any],
    ids: Sequence[Sequence[int]],
    batch_size: int = 32,
    sort_by_length: bool = True,
    pad_id: int = 0,
) -> list[torch.Tensor]:
    """`encode` for sentences already tokenised (lists of token ids)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = sorted(range(len(ids)), key=lambda i: len(ids[i])) if sort_by_length else list(
        range(len(ids)))
    results: list[torch.Tensor | None] = [None] * len(ids)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            longest = max(len(ids[i]) for i in chunk)
            batch = torch.full((len(chunk), longest), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), longest), dtype=torch.long)
            for row, i in enumerate(chunk):
                batch[row, : len(ids[i])] = torch.as_tensor(ids[i], dtype=torch.long)
                mask[row, : len(ids[i])] = 1
            hidden = encoder(input_ids=batch, attention_mask=mask)[0]
            for row, i in enumerate(chunk):
                results[i] = hidden[row, : len(ids[i])]
    return results  # type: ignore[return-value]
