"""Swap the ONNX encoder in for a named sub-module of a live model, and back.

A graft returns the outputs the replaced module returns, in its positions (parents such as
OneIE read `outputs[2]`): an output the file has and the module lacks is dropped; one the
module has and the file lacks refuses the graft.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import GraftError
from .encoder import OnnxEncoder


def graft(
    parent: torch.nn.Module,
    name: str,
    directory: str | Path | OnnxEncoder,
    file: str = "model.onnx",
    threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> torch.nn.Module:
    """Replace `parent.<name>` (a dotted path, e.g. `model.encoder`) by the ONNX encoder.

    The replaced module's output settings (`output_hidden_states`, `return_dict`)
    carry over to the stand-in's config, and its outputs' positions are kept (no
    pooler there: none from the stand-in), so the parent sees the outputs it expects.
    Refused when the file lacks an output the module returns.

    Returns:
        The module that was replaced; `ungraft(parent, name, it)` puts it back.
    """
    owner, attribute, original = locate(parent, name)
    encoder = directory if isinstance(directory, OnnxEncoder) else OnnxEncoder(
        directory, file, threads, providers)
    refusal = output_mismatch(original, encoder, name)
    if refusal:
        raise GraftError(refusal)
    settings = getattr(original, "config", None)
    encoder.returns_pooler = encoder.has_pooler and _pools(original) is not False
    for flag in ("output_hidden_states", "return_dict"):
        if settings is not None and hasattr(settings, flag):
            setattr(encoder.config, flag, getattr(settings, flag))
    setattr(owner, attribute, encoder)
    return original


def output_mismatch(original: torch.nn.Module, encoder: OnnxEncoder, name: str) -> str | None:
    """Why `encoder` cannot return what `original` returns, in the same positions (None: it can).

    `ModelOutput.to_tuple()` drops absent fields, so a pooler_output the file lacks moves
    every later output up one place: OneIE's `outputs[2]` (hidden states) is gone.
    """
    settings = getattr(original, "config", None)
    hidden = bool(getattr(settings, "output_hidden_states", False))
    path = encoder.directory / encoder.file
    if hidden and not encoder.has_hidden_states:
        return (f"{name} returns hidden_states (its config.output_hidden_states), but {path} "
                "was exported without them: extract again with --hidden-states")
    if _pools(original) and not encoder.has_pooler:
        moved = ("its outputs[2] (hidden_states) would be at [1]" if hidden
                 else "its outputs[1] would be missing")
        return (f"{name} has a pooler, but {path} has no pooler_output (exported with "
                f"--no-pooler, or from weights without one): {moved}; extract again without "
                "--no-pooler")
    return None


def _pools(module: torch.nn.Module) -> bool | None:
    """Whether the module returns pooler_output (None: it has no `pooler` to tell by).

    Hugging Face encoders built with `add_pooling_layer=False` hold `pooler = None`.
    """
    if isinstance(module, OnnxEncoder):
        return module.returns_pooler
    if not hasattr(module, "pooler"):
        return None
    return module.pooler is not None


def ungraft(parent: torch.nn.Module, name: str, original: torch.nn.Module) -> None:
    owner, attribute, _ = locate(parent, name)
    setattr(owner, attribute, original)


@contextlib.contextmanager
def grafted(parent: torch.nn.Module, name: str, directory: str | Path | OnnxEncoder,
            **options: Any) -> Iterator[OnnxEncoder]:
    """`with grafted(model, "bert", "out/") as encoder:` the original comes back after."""
    original = graft(parent, name, directory, **options)
    try:
        yield locate(parent, name)[2]
    finally:
        ungraft(parent, name, original)


def locate(parent: torch.nn.Module, name: str) -> tuple[torch.nn.Module, str, torch.nn.Module]:
    """`parent.<name>`'s owner, attribute and module (a dotted path, checked)."""
    path, _, attribute = name.rpartition(".")
    try:
        owner = parent.get_submodule(path) if path else parent
        module = getattr(owner, attribute)
    except AttributeError:
        raise GraftError(f"{type(parent).__name__} has no sub-module {name!r}") from None
    if not isinstance(module, torch.nn.Module):
        raise GraftError(f"{name!r} of {type(parent).__name__} is not a module")
    return owner, attribute, module
