"""What a file is, from its first bytes, before any parser sees it.

Parsers fail on foreign input in ways of their own (torch's unpickler says
`pop from empty list` about a text file), so each loader first names the kind
of file it was given and refuses what is not its format in one line ("a text
file", "empty", "a zip without data.pkl"). Only input that passed is parsed;
whatever the parser then raises is still the input's fault, never a traceback.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from .limits import MAX_JSON_BYTES, human, json_depth_problem

# torch.save's legacy format opens with its magic number pickled: these are its ten bytes.
TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_SIGNATURES = (
    (b"\x1f\x8b", "a gzip file"),
    (b"\x89HDF", "an HDF5 file (Keras/TensorFlow weights?)"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ", "an xz file"),
    (b"7z\xbc\xaf", "a 7-zip file"),
    (b"\x7fELF", "an executable"),
    (b"%PDF", "a PDF"),
    (b"\x89PNG", "a PNG image"),
    (b"GGUF", "a GGUF file (llama.cpp)"),
)
_HEAD = 4096


def head(path: Path, size: int = _HEAD) -> bytes:
    with path.open("rb") as f:
        return f.read(size)


def describe(path: Path) -> str:
    """A few words for what the file looks like: 'empty', 'a text file', 'a zip', ..."""
    data = head(path)
    if not data:
        return "empty"
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return "a zip"
    if safetensors_problem(path) is None:
        return "a safetensors file"
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if is_torch_legacy(data):
        return "a PyTorch checkpoint (legacy format)"
    if len(data) > 1 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return "a Python pickle (not one torch.save wrote)"
    # Before the text test: an ONNX file with external data opens with its initializers'
    # names and locations, printable enough to pass for text (bert-base by TorchScript),
    # and no text starts with the byte 0x08.
    if looks_like_onnx(data):
        return "an ONNX model"
    if _is_text(data):
        return "a JSON file" if _is_json(path, data) else "a text file"
    return f"binary data of no known kind (starts {data[:8].hex(' ')})"


def is_torch_legacy(data: bytes) -> bool:
    """A pickle (any protocol) whose first object is torch's magic number."""
    return len(data) > 2 and data[0] == 0x80 and TORCH_LEGACY_MAGIC in data[:24]


def torch_zip_problem(path: Path) -> str | None:
    """Why a zip is not a torch.save archive, or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except Exception as exc:  # zipfile raises many types on a damaged archive
        return f"a zip that does not open (truncated or corrupt: {exc})"
    if not any(name.endswith("data.pkl") for name in names):
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return f"a zip without data.pkl (holds {shown or 'nothing'}), not a PyTorch checkpoint"
    return None


def safetensors_problem(path: Path) -> str | None:
    """Why the file is not a safetensors file, or None: a little-endian u64 header
    length, then that many bytes of JSON, then the data the header describes."""
    data = head(path, 8)
    if len(data) < 8:
        return "shorter than a safetensors header"
    length = int.from_bytes(data, "little")
    size = path.stat().st_size
    if length < 2 or length > size - 8 or length > 100 << 20:
        return "no safetensors header (its length field does not fit the file)"
    with path.open("rb") as f:
        f.seek(8)
        text = f.read(length)
    try:
        header = parse_json(text)
    except ValueError as exc:
        return f"a safetensors header that does not parse ({exc})"
    if not isinstance(header, dict):
        return "a safetensors header that is not a JSON object"
    ends = [
        v["data_offsets"][1] for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("data_offsets"), list)
        and len(v["data_offsets"]) == 2 and isinstance(v["data_offsets"][1], int)
    ]
    if len(ends) != len([k for k in header if k != "__metadata__"]):
        return "a safetensors header with malformed entries"
    if ends and 8 + length + max(ends) > size:
        return "a safetensors file cut short (its header describes more data than it holds)"
    return None


def looks_like_onnx(data: bytes) -> bool:
    """A protobuf whose first field is ModelProto's ir_version (field 1, a varint)."""
    return len(data) > 2 and data[0] == 0x08 and 1 <= data[1] <= 12


def _is_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data[:-4].decode("utf-8", errors="strict") if _cut_utf8(data) else None
    if text is None:
        return False
    printable = sum(c.isprintable() or c in "\n\r\t" for c in text)
    return printable >= 0.95 * max(1, len(text))


def _cut_utf8(data: bytes) -> bool:
    """A multi-byte character cut by the head's end is still text."""
    try:
        data[:-4].decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _is_json(path: Path, data: bytes) -> bool:
    if data.lstrip()[:1] not in (b"{", b"["):
        return False
    try:
        read_json(path)
        return True
    except ValueError:
        return False


def parse_json(text: str | bytes) -> Any:
    """`json.loads` for text a file holds, refused with a one-line ValueError when it is
    nested too deep to parse safely, too long, not UTF-8, or not JSON."""
    problem = json_depth_problem(text)
    if problem:
        raise ValueError(problem)
    try:
        return json.loads(text)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except RecursionError:
        raise ValueError("JSON nested too deep to parse") from None
    except ValueError as exc:
        reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "integer string conversion" in reason:
            reason = "a number with more digits than Python reads (4300)"
        raise ValueError(reason[:200]) from None


def read_json(path: Path) -> Any:
    """The JSON in `path`; a ValueError with a one-line reason when it cannot be read or
    parsed (the caller names the file)."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:  # refused unread (json_depth_problem's limit)
            raise ValueError(f"{human(path.stat().st_size)} of JSON, over the "
                             f"{human(MAX_JSON_BYTES)} a config may take")
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    return parse_json(data)
