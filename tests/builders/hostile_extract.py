"""Hostile inputs for the extractor: well-formed files that declare harmful things.

`bad_inputs` mutates bytes; these files parse. What they declare is the attack: a
config of 100,000 layers or zero heads, JSON nested 100,000 deep, tensors that are
meta, complex or quantized, a deflated zip, a tokenizer folder outside the
checkpoint's, names that are rich markup. `fixed_cases` holds issue 19's
reproducers; `generated_cases` draws hostile values into well-formed files. Cases
use `bad_inputs`' format: (label, {relative name: bytes}, argv template).
"""

from __future__ import annotations

import io
import json
import random
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]  # the repository
Case = tuple[str, dict[str, bytes], list[str]]

EXTRACT = ["x", "{src}", "--prefix", "bert.", "-o", "{out}"]
QUERY = "bert.encoder.layer.0.attention.self.query.weight"
DEEP = b"[" * 100_000
HUGE_NUMBER = b'{"model_type": "bert", "hidden_size": ' + b"7" * 5000 + b"}"
MARKUP = "[/]odd[link=https://example.com]name[/link]"
# Issue 19's config values: each must be refused in one line, wherever it comes from.
HOSTILE_VALUES: list[tuple[str, Any]] = [
    ("num_hidden_layers", 100_000),
    ("hidden_size", 10**9),
    ("num_attention_heads", 0),
    ("num_attention_heads", -12),
    ("vocab_size", -1),
    ("vocab_size", 0),
    ("max_position_embeddings", -5),
    ("num_attention_heads", "twelve"),
    ("num_attention_heads", 12.5),
    ("layer_norm_eps", "abc"),
    ("hidden_act", "os.system"),
    ("torch_dtype", "os.system"),
    ("initializer_range", -0.5),  # found by fuzz_long: a real build's normal_ refused it
    ("hidden_dropout_prob", 5.0),
    ("pad_token_id", -1),  # found by fuzz_long: padding past the vocabulary failed at parity
]
# Where a config reaches the extractor.
SOURCES = ("--set", "--config", "--model", "config.json", "checkpoint config")


def tiny_config() -> dict[str, Any]:
    """The fixture encoder's config (bert, 2 layers, 4 heads, hidden 64)."""
    return json.loads((ROOT / "fixtures" / "tiny-bert" / "config.json").read_text())


def state_dict() -> dict[str, torch.Tensor]:
    """The fixture's whole state dict: the `bert.` encoder and OneIE's heads."""
    return torch.load(ROOT / "fixtures" / "oneie_tiny.bin", weights_only=True)["model"]


def checkpoint(config: Any = None, weights: dict[str, torch.Tensor] | None = None,
               legacy: bool = False) -> bytes:
    """A OneIE-style checkpoint: `{"model": state_dict, "config": config}`."""
    obj: dict[str, Any] = {"model": state_dict() if weights is None else weights}
    if config is not None:
        obj["config"] = config
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


@dataclass(frozen=True)
class Deep:
    """A value nested `depth` lists deep: written as JSON text, never built as objects
    (json.dumps and pickle recurse, and would refuse it before the extractor sees it)."""

    depth: int

    def json(self) -> str:
        return "[" * self.depth + "1" + "]" * self.depth

    def __repr__(self) -> str:
        return f"<list nested {self.depth} deep>"


def config_case(source: str, name: str, value: Any) -> tuple[dict[str, bytes], list[str]]:
    """Files and arguments that bring the fixture's config with `name=value` through `source`."""
    if isinstance(value, Deep) and source == "checkpoint config":
        value = _nested(min(value.depth, 200))  # pickle's own recursion stops deeper lists
    values = {**tiny_config(), name: "\0deep" if isinstance(value, Deep) else value}
    text = json.dumps(values).encode()
    if isinstance(value, Deep):
        text = text.replace(b'"\\u0000deep"', value.json().encode())
    if source == "--set":
        shown = value if isinstance(value, str) else value.json() if isinstance(
            value, Deep) else json.dumps(value)
        return ({"model.bin": checkpoint(tiny_config())},
                [*EXTRACT, "--set", f"{name}={shown}"])
    if source == "--config":
        return {"model.bin": checkpoint(), "encoder.json": text}, [*EXTRACT, "--config",
                                                                   "encoder.json"]
    if source == "--model":
        return {"model.bin": checkpoint(), "encoder/config.json": text}, [*EXTRACT, "--model",
                                                                         "encoder"]
    if source == "config.json":
        return {"model.bin": checkpoint(), "config.json": text}, EXTRACT
    return {"model.bin": checkpoint(values)}, EXTRACT


def json_case(where: str, text: bytes) -> tuple[dict[str, bytes], list[str]]:
    """`text` as the JSON the extractor reads at `where`."""
    good = checkpoint()
    if where == "checkpoint":
        return {"model.bin": text}, EXTRACT
    if where == "safetensors header":
        return {"model.safetensors": struct.pack("<Q", len(text)) + text}, EXTRACT
    if where == "shard index":
        return ({"model.safetensors.index.json": text, "model-1.safetensors": _safetensors()},
                ["x", "{dir}", "--prefix", "bert.", "-o", "{out}"])
    if where == "modules.json":
        return ({"modules.json": text, "model.safetensors": _safetensors()},
                ["x", "{dir}", "--prefix", "bert.", "-o", "{out}"])
    if where == "--config":
        return {"model.bin": good, "encoder.json": text}, [*EXTRACT, "--config", "encoder.json"]
    if where == "--model":
        return {"model.bin": good, "encoder/config.json": text}, [*EXTRACT, "--model", "encoder"]
    if where == "project config":
        return {"model.bin": good, "gliner_config.json": text}, EXTRACT
    return {"model.bin": good, "config.json": text}, EXTRACT


JSON_PLACES = ("checkpoint", "safetensors header", "shard index", "modules.json", "--config",
               "--model", "config.json", "project config")


def _safetensors(weights: dict[str, torch.Tensor] | None = None) -> bytes:
    from safetensors.torch import save

    weights = weights if weights is not None else state_dict()
    return save({k: v.contiguous() for k, v in weights.items()})


def with_tensor(key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**state_dict(), key: tensor}


def hostile_tensors() -> dict[str, torch.Tensor]:
    """The query weight of layer 0 made into each tensor an encoder must not take."""
    weight = state_dict()[QUERY]
    return {
        "meta": torch.empty(weight.shape, device="meta"),
        "complex64": weight.to(torch.complex64),
        "bool": weight > 0,
        "int8": weight.to(torch.int8),
        "quantized": quantized(weight),
    }


def quantized(tensor: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # torch deprecates making quantized tensors, not loading
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(tensor, 0.01, 0, torch.qint8)


def deflated(data: bytes, declare: dict[str, int] | None = None) -> bytes:
    """A torch.save zip re-zipped with ZIP_DEFLATED; `declare` overstates members' sizes
    in the central directory (what a reader trusts before inflating)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in source.infolist():
            archive.writestr(item.filename, source.read(item), zipfile.ZIP_DEFLATED)
        for info in archive.infolist():
            for suffix, size in (declare or {}).items():
                if info.filename.endswith(suffix):
                    info.file_size = size
    return buffer.getvalue()


def _tokenizer_files(folder: str) -> dict[str, bytes]:
    fixture = ROOT / "fixtures" / "tiny-bert"
    return {f"{folder}/{p.name}": p.read_bytes() for p in sorted(fixture.iterdir())}


def fixed_cases(workdir: Path) -> list[Case]:
    """Every reproducer of issue 19 (extractor side)."""
    found: list[Case] = []
    for source in SOURCES:
        for name, value in HOSTILE_VALUES:
            files, argv = config_case(source, name, value)
            found.append((f"{source} {name}={value!r}", files, argv))
    for where in JSON_PLACES:
        found.append((f"JSON 100000 deep as {where}", *json_case(where, DEEP)))
    for where in ("--config", "--model", "config.json"):
        found.append((f"5000-digit number in {where}", *json_case(where, HUGE_NUMBER)))
        found.append((f"'{{bad' in {where}", *json_case(where, b"{bad")))
    for dtype, tensor in hostile_tensors().items():
        found.append((f"{dtype} encoder weight", {"model.bin": checkpoint(
            tiny_config(), with_tensor(QUERY, tensor))}, EXTRACT))
    found.append(("every encoder weight quantized", {"model.bin": checkpoint(tiny_config(), {
        k: quantized(v) if k.startswith("bert.") and
        v.dim() == 2 else v for k, v in state_dict().items()})}, EXTRACT))
    found.append(("meta weight of 2**40 rows", {"model.bin": checkpoint(
        tiny_config(), with_tensor(QUERY, torch.empty(2**40, 64, device="meta")))}, EXTRACT))
    found.append(("deflated torch zip (valid)", {"model.bin": deflated(checkpoint(
        tiny_config()))}, EXTRACT))
    found.append(("deflated member declaring 16 GiB", {"model.bin": deflated(
        checkpoint(tiny_config()), {"data/0": 16 * 2**30})}, [*EXTRACT, "--max-memory", "8G"]))
    elsewhere = workdir / "elsewhere" / "tiny-bert"
    elsewhere.mkdir(parents=True, exist_ok=True)
    for name, content in _tokenizer_files("tiny-bert").items():
        (workdir / "elsewhere" / name).write_bytes(content)
    found.append(("tokenizer folder at an absolute path elsewhere", {
        "ckpt/model.bin": checkpoint({"bert_model_name": str(elsewhere)})}, EXTRACT))
    found.append(("tokenizer folder at '../..'", {
        "a/b/model.bin": checkpoint({"bert_model_name": "../.."}),
        **_tokenizer_files(".")}, EXTRACT))
    found.append(("markup in the checkpoint's folder name", {  # and the output's, to show it
        f"{MARKUP}/model.bin": checkpoint(tiny_config())}, [*EXTRACT[:-1], f"out/{MARKUP}"]))
    found.append(("markup in the checkpoint's folder name, --list", {
        f"{MARKUP}/model.bin": checkpoint(tiny_config())}, ["x", "{src}", "--list"]))
    found.append(("markup in a key outside the encoder, --list", {"model.bin": checkpoint(
        tiny_config(), with_tensor(f"head.{MARKUP}.weight", torch.zeros(2)))},
        ["x", "{src}", "--list"]))
    found.append(("markup in an unexpected encoder key", {"model.bin": checkpoint(
        tiny_config(), with_tensor(f"bert.{MARKUP}", torch.zeros(2)))}, EXTRACT))
    found.append(("markup in the config's model name", {"model.bin": checkpoint(
        {"bert_model_name": MARKUP})}, EXTRACT))
    found.append(("markup in a rejected model name, then a good one", {"model.bin": checkpoint(
        {"bert_model_name": MARKUP, "model_name": "tiny-bert"}), **_tokenizer_files(
            "tiny-bert")}, EXTRACT))
    found.append(("markup as the prefix", {"model.bin": checkpoint(tiny_config())},
                  ["x", "{src}", "--prefix", MARKUP, "-o", "{out}"]))
    for size in ("0", "-1", "lots", "1e400"):
        found.append((f"--max-memory {size}", {"model.bin": checkpoint(tiny_config())},
                      [*EXTRACT, "--max-memory", size]))
    found += saved_output_cases(workdir)
    return found


BENCH = ["x", "bench", "{dir}", "--shapes", "1x8", "--runs", "1"]


def saved_output(workdir: Path) -> dict[str, bytes]:
    """The files of a real extractor output (the fixture's), built once per `workdir`."""
    folder = workdir / "saved-output"
    if not (folder / "report.json").is_file():
        from extractor import extract

        extract(ROOT / "fixtures" / "oneie_tiny.bin", "bert.", folder)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def saved_output_cases(workdir: Path) -> list[Case]:
    """`bench` on an output directory whose config or ONNX file was made hostile."""
    saved = saved_output(workdir)
    found: list[Case] = []
    for name, value in HOSTILE_VALUES:
        config = {**json.loads(saved["config.json"]), name: value}
        found.append((f"bench, output config {name}={value!r}",
                      {**saved, "config.json": json.dumps(config).encode()}, BENCH))
    found.append(("bench, output config 100000 deep", {**saved, "config.json": DEEP}, BENCH))
    found.append(("bench, output report.json 100000 deep (then extract over it)",
                  {"model.bin": checkpoint(tiny_config()), "out/report.json": DEEP},
                  EXTRACT))
    import onnx

    model = onnx.load_from_string(saved["model.onnx"])
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    for location in ("../outside.data", "/etc/passwd"):
        del weight.external_data[:]
        entry = weight.external_data.add()
        entry.key, entry.value = "location", location
        found.append((f"bench, output ONNX data at {location}",
                      {**saved, "model.onnx": model.SerializeToString()}, BENCH))
    return found


# Which fixed cases are valid input: the run must succeed (0), not be refused.
VALID = ("deflated torch zip (valid)", "tokenizer folder at an absolute path elsewhere",
         "tokenizer folder at '../..'", "markup in the checkpoint's folder name",
         "markup in the checkpoint's folder name, --list",
         "markup in a key outside the encoder, --list",
         "markup in a rejected model name, then a good one")

_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
           "vocab_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
           "hidden_act", "hidden_dropout_prob", "initializer_range", "pad_token_id",
           "position_embedding_type", "classifier_dropout", "torch_dtype", "dtype",
           "model_type", "is_decoder")
_DTYPES = (torch.complex64, torch.complex128, torch.bool, torch.int8, torch.uint8, torch.int64,
           torch.float64, torch.float16, torch.bfloat16)


def _hostile_value(rng: random.Random) -> Any:
    return rng.choice([
        0, -1, -(2**63), 2**63, 2**31, 10**9, 10**12, 1.5, -0.5, float("nan"), True, None,
        "x", "12", "", MARKUP, "\x1b[31mred\x1b[0m", "os.system", "float32", [4], {"a": 1},
        Deep(rng.choice([10, 65, 5000, 100_000])),
    ])


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def generated_cases(rng: random.Random, count: int) -> list[Case]:
    """`count` hostile values in well-formed files, each chosen by `rng`."""
    makers = (_config_value, _config_value, _tensor_dtype, _safetensors_header, _deep_json,
              _markup_key)
    return [rng.choice(makers)(rng) for _ in range(count)]


def _config_value(rng: random.Random) -> Case:
    name, value = rng.choice(_FIELDS), _hostile_value(rng)
    source = rng.choice(SOURCES)
    files, argv = config_case(source, name, value)
    return f"{source} {name}={repr(value)[:40]}", files, argv


def _tensor_dtype(rng: random.Random) -> Case:
    weights = state_dict()
    key = rng.choice([k for k in weights if k.startswith("bert.")])
    dtype = rng.choice(_DTYPES)
    hostile = {**weights, key: weights[key].to(dtype)}
    argv = rng.choice([EXTRACT, ["x", "{src}", "--list"]])
    return f"{key} as {dtype}", {"model.bin": checkpoint(tiny_config(), hostile)}, argv


def _safetensors_header(rng: random.Random) -> Case:
    weights = {k: v for k, v in state_dict().items() if k.startswith("bert.")}
    data = _safetensors(weights)
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + length])
    key = rng.choice([k for k in header if k != "__metadata__"])
    change = rng.choice(["huge shape", "negative shape", "huge offsets", "overlapping offsets",
                         "unknown dtype", "shape overflows", "markup key", "many entries"])
    entry = header[key]
    if change == "huge shape":
        entry["shape"] = [2**40, 2**20]
    elif change == "negative shape":
        entry["shape"] = [-1] + entry["shape"][1:]
    elif change == "huge offsets":
        entry["data_offsets"] = [0, 2**62]
    elif change == "overlapping offsets":
        entry["data_offsets"] = [0, entry["data_offsets"][1]]
    elif change == "unknown dtype":
        entry["dtype"] = rng.choice(["Q8", "os.system", "", MARKUP])
    elif change == "shape overflows":
        entry["shape"] = [2**62, 2**62]
    elif change == "markup key":
        header[f"{MARKUP}.{key}"] = header.pop(key)
    else:
        header.update({f"extra.{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                       for i in range(20000)})
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return (f"safetensors header: {change} at {key}",
            {"model.safetensors": struct.pack("<Q", len(text)) + text + data[8 + length:]},
            EXTRACT)


def _deep_json(rng: random.Random) -> Case:
    depth = rng.choice([65, 1000, 100_000])
    opener = rng.choice([b"[", b'{"a":'])
    where = rng.choice(JSON_PLACES)
    return f"JSON {depth} deep ({opener.decode()}) as {where}", *json_case(where, opener * depth)


def _markup_key(rng: random.Random) -> Case:
    name = rng.choice([MARKUP, "[bold]x", "\x1b]8;;https://e.com\x1b\\link", "a\nb", "[/]"])
    where = rng.choice(["head.", "bert.", "bert.encoder.layer.0."])
    weights = with_tensor(f"{where}{name}", torch.zeros(2))
    argv = rng.choice([EXTRACT, ["x", "{src}", "--list"], ["x", "{src}", "-o", "{out}"]])
    return f"key {where}{name!r}", {"model.bin": checkpoint(tiny_config(), weights)}, argv
