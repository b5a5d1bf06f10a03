"""Load the PyTorch reference: a Hugging Face model directory, `module:factory`, or a module.

A directory loads with transformers' AutoModel from local files only (never a hub);
`module:factory` imports the module and calls `factory()`. Anything that does not
give an `nn.Module` is a `ReferenceModelError`, one line.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from ..errors import ReferenceModelError, first_line

_FACTORY = re.compile(r"([A-Za-z_][\w.]*):([A-Za-z_]\w*)")


def load_reference(reference):
    """An `nn.Module` in eval mode, and a label for it."""
    import torch

    if isinstance(reference, torch.nn.Module):
        return reference.eval(), type(reference).__name__
    text = str(reference)
    path = Path(text)
    if path.is_dir():
        return _from_directory(path), text
    match = _FACTORY.fullmatch(text)
    if match and not path.exists():
        return _from_factory(match[1], match[2]), text
    if path.exists():
        raise ReferenceModelError(f"--reference {text}: a file; give a Hugging Face model "
                                  "directory (config.json and weights) or module:factory")
    raise ReferenceModelError(f"--reference {text}: no such directory, and not module:factory")


def _from_directory(path: Path):
    if not (path / "config.json").is_file():
        raise ReferenceModelError(f"--reference {path}: no config.json (a Hugging Face model "
                                  "directory holds config.json and the weights)")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    quiet = hf_logging.is_progress_bar_enabled()
    if quiet:  # its weight-loading bar would land on our stderr
        hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ReferenceModelError(f"--reference {path}: transformers cannot load it: "
                                  f"{first_line(exc, 300)}") from None
    finally:
        if quiet:
            hf_logging.enable_progress_bar()
    return model.eval()


def _from_factory(module_name: str, factory_name: str):
    import torch

    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any failure to import is bad input
        raise ReferenceModelError(f"--reference {module_name}:{factory_name}: cannot import "
                                  f"{module_name}: {first_line(exc, 300)}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ReferenceModelError(f"--reference {module_name}:{factory_name}: {module_name} "
                                  f"has no callable {factory_name}")
    try:
        built = factory()
    except Exception as exc:
        raise ReferenceModelError(f"--reference {module_name}:{factory_name}: the factory "
                                  f"raised {type(exc).__name__}: {first_line(exc, 300)}") from None
    if not isinstance(built, torch.nn.Module):
        raise ReferenceModelError(f"--reference {module_name}:{factory_name} returned a "
                                  f"{type(built).__name__}, not a torch.nn.Module")
    return built.eval()


def call_reference(module, feed: dict):
    """Run `module` on the ONNX feed: by keyword where its forward names every input,
    else by position in the graph's input order."""
    import torch

    tensors = {k: torch.from_numpy(v) for k, v in feed.items()}
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        params = {}
    with torch.no_grad():
        if all(name in params for name in tensors):
            return module(**tensors)
        return module(*tensors.values())
