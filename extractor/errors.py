"""User-facing errors of the extractor.

Every `ExtractorError` is bad input or usage: `main` prints its message as one
line and exits 2. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class ExtractorError(Exception):
    """Bad input or usage; the message is one line for the user."""


class CheckpointError(ExtractorError):
    """The checkpoint is missing, unreadable, corrupt or holds no weights."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint needs arbitrary code to unpickle and was not trusted."""


class PrefixError(ExtractorError):
    """The prefix names no encoder in the state dict, or the choice is ambiguous."""


class ArchitectureError(ExtractorError):
    """No configuration could be resolved, or it disagrees with the weights."""


class UnexportableError(ExtractorError):
    """This architecture (or setting) cannot be exported to dynamic ONNX on this stack."""


class GraftError(ExtractorError):
    """The ONNX encoder cannot stand in for this call (or this sub-module, or this output)."""


class WeightMismatchError(ExtractorError):
    """The stripped weights do not fit the fresh model (missing, unexpected, shape)."""

    def __init__(self, message: str, keys: object) -> None:
        super().__init__(message)
        self.keys = keys


class OutputError(ExtractorError):
    """The output path cannot be used (exists and is not ours, or holds the input)."""
