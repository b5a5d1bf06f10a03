"""Open what a user hands over: a checkpoint, or one wrapped by the project that saved it.

`checkpoint.load_checkpoint` reads weight files and model folders. Two wrappings are
unwrapped first, here: an AllenNLP `model.tar.gz` (or serialization folder with
`best.th`; `allennlp`), and LoRA weights saved unmerged or as a PEFT adapter folder
(also a Trainer's `checkpoint-N/`), merged into their base weights (`lora`).
Everything after sees a plain state dict.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .allennlp import load_archive, serialization_weights
from .archives import is_tar
from .checkpoint import Checkpoint, load_checkpoint
from .lora import adapter_weights, merge_lora


def open_checkpoint(path: str | Path, trust: bool = False, max_memory: int | None = None,
                    cache_dir: str | Path | None = None) -> Checkpoint:
    """`load_checkpoint`, with AllenNLP archives opened and LoRA weights merged.

    Raises:
        CheckpointError: as `load_checkpoint`, and what the archive's safety checks or
            the LoRA merge refuse.
    """
    path = Path(path)
    if is_tar(path):
        ckpt = load_archive(path, trust, max_memory)
    elif (weights := serialization_weights(path) or adapter_weights(path)) is not None:
        inner = load_checkpoint(weights, trust, max_memory)
        ckpt = replace(inner, path=path, format=f"directory:{inner.format}")
    else:
        ckpt = load_checkpoint(path, trust, max_memory)
    return merge_lora(ckpt, trust, max_memory, cache_dir)
