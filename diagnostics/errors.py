"""User-facing errors of the diagnostics.

Every `DiagnosticsError` is bad input or usage: `main` prints its message as one
line and exits 2. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one line of a message: its first line, at most `limit` characters
    (its type's name when it has no text)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


class DiagnosticsError(Exception):
    """Bad input or usage; the message is one line for the user."""


class ModelFileError(DiagnosticsError):
    """The file is missing, unreadable, not ONNX, truncated or malformed."""


class UnknownDomainError(DiagnosticsError):
    """A node uses an operator domain that neither ONNX nor the model defines."""


class ShapeSpecError(DiagnosticsError):
    """A `--dummy` or `--probe` shape list could not be parsed."""


class ResourceLimitError(DiagnosticsError):
    """What the input declares (a tensor, a probe input) would need more memory than allowed."""


class ServeError(DiagnosticsError):
    """Netron could not serve: the port is taken, or the focus node is not in the graph."""


class OutputPathError(DiagnosticsError):
    """The output path is missing, or is the input itself."""


class OutputFileError(DiagnosticsError):
    """An output cannot be written: a read-only folder, a full disk, a missing path."""


class ReferenceModelError(DiagnosticsError):
    """`compare --reference` is not a model directory, a loadable module:factory, or a module."""


class CompareRunError(DiagnosticsError):
    """The model or the reference fails on the inputs `compare` runs them on."""
