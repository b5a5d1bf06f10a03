"""A corpus of ONNX models that are not BERT-style text encoders, healthy and frozen.

Vision (ViT, CLIP vision), text (CLIP text, T5 encoder, DeBERTa-v2, ModernBERT),
audio (Whisper encoder, wav2vec2), decoders (GPT-2, with and without past key
values) and GLiNER's whole span model (its export's inputs, axes and batch-1
dummy), each a tiny random model behind a small positional wrapper, exported
by the stock torch.onnx exporters. As in tests/builders/broken_models.py, nothing here
edits a graph: a frozen shape is whatever the exporter baked in.

    for model, variant in CORPUS:
        path = build(model, variant, tmp_dir)           # <tmp_dir>/<model>--<variant>.onnx
        about = entry(model, variant)                   # dims, dummy, what froze, the error
        for sizes in about.trials:                      # the dummy, then batch 1 and 3
            session.run(None, feeds(model, sizes))      # reference(model) gives PyTorch's

Variants (FIELD_NOTES, "How shapes get frozen"):
    healthy-torchscript  TorchScript exporter, dynamic axes naming every dynamic dim
    healthy-dynamo       torch.export-based exporter with `torch.export.Dim`s
    static-inputs        `dynamic_axes` keyed by misspelt input names: inputs static
    python-ints          attention that takes its sizes as Python ints: Reshapes frozen
    dummy-batch-1        batch (not sequence) as a Python int, traced at batch 1: runs at
                         batch 1 at any size, nowhere else
    dynamo-specialised   (ViT) torch.export-based exporter with a square dummy image: height
                         and width silently specialised to 30 although given as Dims

Also `third_party_models()`: small ONNX files that ship inside pip packages (silero-vad,
rapidocr-onnxruntime, magika, onnx's own test data), with `third_party_feeds` for two or
three shapes each. benchmarks/corpus_models.py builds and runs all of it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AttentionInterface  # noqa: E402
from transformers.masking_utils import AttentionMaskInterface, eager_mask  # noqa: E402
from transformers.models.deberta_v2 import modeling_deberta_v2  # noqa: E402
from transformers.models.whisper import modeling_whisper  # noqa: E402

from tests.builders.broken_models import quiet  # noqa: E402

OPSET = 17
# Every model: hidden 48 in 4 heads of 12, dummy batch 2; sequence-like dummies (7, 26,
# 39 frames, 6+7 past) collide with no head count, head size or batch*heads (8).
HEADS, HEAD_SIZE = 4, 12
HIDDEN = HEADS * HEAD_SIZE
FROZEN_ATTENTION = "subgraft_frozen_sizes"
FROZEN_BATCH_ATTENTION = "subgraft_frozen_batch"
ALL = ("healthy-torchscript", "healthy-dynamo", "static-inputs", "python-ints", "dummy-batch-1")


# -- the models --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    """A graph input or output; a str dim is dynamic (its dim_param), `a + b` a sum of two."""

    name: str
    dims: tuple[int | str, ...]
    kind: str = "float"  # "float", "ids" (int64 below the vocabulary) or "mask" (int64 0/1)


@dataclass(frozen=True)
class Spec:
    """One model: how to build its wrapper, its inputs and outputs, and the sizes to try."""

    name: str
    make: Callable[[], torch.nn.Module]
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    dummy: dict[str, int]
    # Two more shapes for verification: batch 1 and 3, other spatial/sequence sizes.
    others: tuple[dict[str, int], dict[str, int]]
    variants: tuple[str, ...] = ALL
    # Query length, key length, and whether attention gets a mask, at the dummy sizes.
    attention: tuple[int, int, bool] = (7, 7, True)
    # A dummy for the torch.export-based exporter where the usual one would specialise dims.
    dynamo_dummy: dict[str, int] | None = None
    note: str = ""
    batch: str = "batch"  # the batch dim's name (GLiNER's export calls it batch_size)
    # Inputs whose values must agree with each other (GLiNER's words and spans): sizes -> feeds.
    feeds: Callable[[dict[str, int], int], dict[str, np.ndarray]] | None = None


class Wrapper(torch.nn.Module):
    """A positional forward over a transformers model, returning tensors only."""

    def __init__(self, model: torch.nn.Module, call: Callable[..., tuple[torch.Tensor, ...]]):
        super().__init__()
        self.model = model
        self.call = call

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.call(self.model, *inputs)


def _tiny(config_class: type, model_class: type, **values: object) -> torch.nn.Module:
    torch.manual_seed(0)
    config = config_class(**values)
    config._attn_implementation = "eager"
    model = model_class(config).eval()
    with torch.no_grad():  # biases and norms start at 0/1: make every weight count
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model


def _last_hidden(model: torch.nn.Module, *inputs: torch.Tensor, **extra: object) -> tuple:
    return (model(*inputs, **extra).last_hidden_state,)


def _images(model: torch.nn.Module, pixel_values: torch.Tensor) -> tuple:
    # Interpolated positions: without them both models refuse any other image size.
    return _last_hidden(model, pixel_values, interpolate_pos_encoding=True)


def _text(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple:
    return (model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,)


def _with_past(model: torch.nn.Module, input_ids, attention_mask, *past: torch.Tensor) -> tuple:
    pairs = [(past[i], past[i + 1]) for i in range(0, len(past), 2)]
    output = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        cache=transformers.DynamicCache(pairs),
        use_cache=True,
    )
    present = [t for layer in output.cache.layers for t in (layer.keys, layer.values)]
    return (output.last_hidden_state, *present)


def _vit() -> Wrapper:
    model = _tiny(
        transformers.ViTConfig, transformers.ViTModel, hidden_size=HIDDEN, num_hidden_layers=2,
        num_attention_heads=HEADS, intermediate_size=37, image_size=30, patch_size=6,
    )
    return Wrapper(model, _images)


def _clip_vision() -> Wrapper:
    model = _tiny(
        transformers.CLIPVisionConfig, transformers.CLIPVisionModel, hidden_size=HIDDEN,
        num_hidden_layers=2, num_attention_heads=HEADS, intermediate_size=37, image_size=30,
        patch_size=6, projection_dim=16,
    )
    return Wrapper(model, _images)


def _clip_text() -> Wrapper:
    model = _tiny(
        transformers.CLIPTextConfig, transformers.CLIPTextModel, vocab_size=99, hidden_size=HIDDEN,
        num_hidden_layers=2, num_attention_heads=HEADS, intermediate_size=37,
        max_position_embeddings=64, projection_dim=16, pad_token_id=0, bos_token_id=1,
        eos_token_id=2,
    )
    return Wrapper(model, _text)


def _whisper() -> Wrapper:
    model = _tiny(
        transformers.WhisperConfig, modeling_whisper.WhisperEncoder, vocab_size=99, num_mel_bins=10,
        d_model=HIDDEN, encoder_layers=2, encoder_attention_heads=HEADS, decoder_layers=1,
        decoder_attention_heads=HEADS, encoder_ffn_dim=37, decoder_ffn_dim=37,
        max_source_positions=15, max_target_positions=32, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, decoder_start_token_id=1,
    )
    return Wrapper(model, _last_hidden)


def _wav2vec2() -> Wrapper:
    model = _tiny(
        transformers.Wav2Vec2Config, transformers.Wav2Vec2Model, hidden_size=HIDDEN,
        num_hidden_layers=2, num_attention_heads=HEADS, intermediate_size=37,
        conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=99,
    )
    return Wrapper(model, _last_hidden)


def _gpt2_config() -> dict[str, object]:
    return dict(vocab_size=99, n_embd=HIDDEN, n_layer=2, n_head=HEADS, n_positions=64, n_inner=37,
                bos_token_id=98, eos_token_id=98)


def _gpt2() -> Wrapper:
    return Wrapper(_tiny(transformers.GPT2Config, transformers.GPT2Model, **_gpt2_config()), _text)


def _gpt2_past() -> Wrapper:
    model = _tiny(transformers.GPT2Config, transformers.GPT2Model, **_gpt2_config())
    return Wrapper(model, _with_past)


def _t5() -> Wrapper:
    model = _tiny(
        transformers.T5Config, transformers.T5EncoderModel, vocab_size=99, d_model=HIDDEN,
        d_kv=HEAD_SIZE, d_ff=37, num_layers=2, num_heads=HEADS,
    )
    return Wrapper(model, _text)


def _deberta_v2() -> Wrapper:
    model = _tiny(
        transformers.DebertaV2Config, transformers.DebertaV2Model, vocab_size=99,
        hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=HEADS,
        intermediate_size=37, max_position_embeddings=64, relative_attention=True,
        pos_att_type=["p2c", "c2p"], position_buckets=16, norm_rel_ebd="layer_norm",
        share_att_key=True, position_biased_input=False, type_vocab_size=0, layer_norm_eps=1e-7,
    )
    return Wrapper(model, _text)


def _modernbert() -> Wrapper:
    model = _tiny(
        transformers.ModernBertConfig, transformers.ModernBertModel, vocab_size=99,
        hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=HEADS,
        intermediate_size=37, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, cls_token_id=1, sep_token_id=2, global_attn_every_n_layers=2,
        local_attention=16,
    )
    return Wrapper(model, _text)


# GLiNER (urchade/GLiNER, gliner/model.py, UniEncoderSpan's export_to_onnx): a DeBERTa
# encoder over `[CLS] <<ENT>> label <<ENT>> label <<SEP>> words [SEP]`, word vectors
# scattered from each word's first token (words_mask holds 1-based word numbers), label
# vectors from the <<ENT>> tokens, spans of up to WIDTH words from span_idx; the TorchScript
# exporter, opset as given, its input names and dynamic axes, and its dummy: one sentence
# (batch 1). The model below is written for this corpus, the layout is GLiNER's.
ENT, SEP, WIDTH = 5, 6, 4
_PROMPT = (1, ENT, 10, ENT, 11, SEP)  # [CLS] <<ENT>> person <<ENT>> place <<SEP>>


class TinyGliner(torch.nn.Module):
    """GLiNER's span model (markerV0 spans, dot-product scores), small and random."""

    def __init__(self) -> None:
        super().__init__()
        self.model = _deberta_v2().model
        torch.manual_seed(1)
        self.start, self.end = torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.Linear(HIDDEN, HIDDEN)
        self.span = torch.nn.Linear(2 * HIDDEN, HIDDEN)
        self.prompt = torch.nn.Linear(HIDDEN, HIDDEN)

    def forward(self, input_ids, attention_mask, words_mask, text_lengths, span_idx, span_mask):
        tokens = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        batch, _, hidden = tokens.size()
        is_label = input_ids == ENT
        per_row = is_label.sum(-1, keepdim=True)
        slots = torch.arange(per_row.max(), dtype=attention_mask.dtype).expand(batch, -1)
        rows, slot = torch.where(slots < per_row)
        _, where = torch.where(is_label)
        labels = torch.zeros(batch, per_row.max(), hidden, dtype=tokens.dtype)
        labels[rows, slot] = tokens[rows, where]
        words = torch.zeros(batch, text_lengths.max(), hidden, dtype=tokens.dtype)
        rows, position = torch.where(words_mask > 0)
        words[rows, words_mask[rows, position] - 1] = tokens[rows, position]
        b, length, d = words.size()

        def pick(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return torch.gather(x, 1, index.unsqueeze(2).expand(-1, -1, d))

        ends = torch.cat([pick(self.start(words), span_idx[:, :, 0]),
                          pick(self.end(words), span_idx[:, :, 1])], dim=-1).relu()
        spans = self.span(ends).view(b, length, WIDTH, d)
        logits = torch.einsum("BLKD,BCD->BLKC", spans, self.prompt(labels))
        return (logits.masked_fill(span_mask.view(b, length, WIDTH, 1) == 0, -1e4),)


def _gliner_feeds(sizes: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """One sentence per row: the prompt, `sequence_length - 7` one-token words, [SEP]; every
    span of up to WIDTH words (num_spans = words x WIDTH), as GLiNER's collator builds them."""
    batch, words = sizes["batch_size"], sizes["sequence_length"] - len(_PROMPT) - 1
    generator = np.random.default_rng(seed)
    ids = np.array([[*_PROMPT, *generator.integers(12, 99, words), 2] for _ in range(batch)])
    words_mask = np.zeros_like(ids)
    words_mask[:, len(_PROMPT):-1] = np.arange(1, words + 1)
    starts = np.repeat(np.arange(words), WIDTH)
    stops = starts + np.tile(np.arange(WIDTH), words)
    spans = np.stack([starts, np.minimum(stops, words - 1)], -1)
    return {
        "input_ids": ids.astype(np.int64),
        "attention_mask": np.ones_like(ids, dtype=np.int64),
        "words_mask": words_mask.astype(np.int64),
        "text_lengths": np.full((batch, 1), words, np.int64),
        "span_idx": np.broadcast_to(spans, (batch, *spans.shape)).astype(np.int64),
        "span_mask": np.broadcast_to(stops < words, (batch, len(stops))).astype(np.int64),
    }


def _gliner_sizes(batch: int, sequence: int) -> dict[str, int]:
    words = sequence - len(_PROMPT) - 1
    return {"batch_size": batch, "sequence_length": sequence, "value": 1,
            "num_spans": words * WIDTH, "idx": 2}


def _text_spec(name: str, make: Callable[[], Wrapper]) -> Spec:
    return Spec(
        name, make,
        (Port("input_ids", ("batch", "sequence"), "ids"),
         Port("attention_mask", ("batch", "sequence"), "mask")),
        (Port("last_hidden_state", ("batch", "sequence", HIDDEN)),),
        {"batch": 2, "sequence": 7}, ({"batch": 1, "sequence": 11}, {"batch": 3, "sequence": 5}),
    )


def _image_spec(name: str, make: Callable[[], Wrapper], variants: tuple[str, ...] = ALL) -> Spec:
    return Spec(
        name, make,
        (Port("pixel_values", ("batch", 3, "height", "width")),),
        (Port("last_hidden_state", ("batch", "tokens", HIDDEN)),),
        {"batch": 2, "height": 30, "width": 30},
        ({"batch": 1, "height": 36, "width": 36}, {"batch": 3, "height": 30, "width": 42}),
        variants, attention=(26, 26, False),
        # A square image at the checkpoint's size takes the `num_patches == num_positions and
        # height == width` shortcut in interpolate_pos_encoding: torch.export specialises.
        dynamo_dummy={"batch": 2, "height": 30, "width": 36},
        note="30x30 images in 6x6 patches: 25 patches + CLS = 26 tokens",
    )


_PAST = tuple(
    Port(f"past_key_values.{layer}.{kind}", ("batch", HEADS, "past_sequence", HEAD_SIZE))
    for layer in range(2) for kind in ("key", "value")
)
_TOTAL = "past_sequence + sequence"

SPECS: dict[str, Spec] = {spec.name: spec for spec in (
    _image_spec("vit", _vit, (*ALL, "dynamo-specialised")),
    _image_spec("clip-vision", _clip_vision),
    _text_spec("clip-text", _clip_text),
    Spec(
        "whisper-encoder", _whisper,
        (Port("input_features", ("batch", 10, 30)),),
        (Port("last_hidden_state", ("batch", 15, HIDDEN)),),
        {"batch": 2}, ({"batch": 1}, {"batch": 3}), attention=(15, 15, False),
        note="frames are fixed by design (2 x max_source_positions = 30): only batch is dynamic",
    ),
    Spec(
        "wav2vec2", _wav2vec2,
        (Port("input_values", ("batch", "samples")),),
        (Port("last_hidden_state", ("batch", "frames", HIDDEN)),),
        {"batch": 2, "samples": 400}, ({"batch": 1, "samples": 560}, {"batch": 3, "samples": 320}),
        attention=(39, 39, False), note="conv strides 5 and 2: 400 samples -> 39 frames",
    ),
    _text_spec("gpt2", _gpt2),
    Spec(
        "gpt2-past", _gpt2_past,
        (Port("input_ids", ("batch", "sequence"), "ids"),
         Port("attention_mask", ("batch", _TOTAL), "mask"), *_PAST),
        (Port("last_hidden_state", ("batch", "sequence", HIDDEN)),
         *(Port(p.name.replace("past_key_values", "present"), ("batch", HEADS, _TOTAL, HEAD_SIZE))
           for p in _PAST)),
        {"batch": 2, "sequence": 7, "past_sequence": 6},
        ({"batch": 1, "sequence": 1, "past_sequence": 9},
         {"batch": 3, "sequence": 4, "past_sequence": 3}),
        attention=(7, 13, True), note="past key/value in, present out (Optimum's names)",
    ),
    _text_spec("t5-encoder", _t5),
    _text_spec("deberta-v2", _deberta_v2),
    _text_spec("modernbert", _modernbert),
    Spec(
        "gliner", TinyGliner,
        (Port("input_ids", ("batch_size", "sequence_length")),
         Port("attention_mask", ("batch_size", "sequence_length")),
         Port("words_mask", ("batch_size", "sequence_length")),
         Port("text_lengths", ("batch_size", "value")),
         Port("span_idx", ("batch_size", "num_spans", "idx")),
         Port("span_mask", ("batch_size", "num_spans"))),
        # GLiNER names the logits' word axis sequence_length and its width axis num_spans.
        (Port("logits", ("batch_size", "sequence_length", "num_spans", "num_classes")),),
        _gliner_sizes(1, 14), (_gliner_sizes(1, 20), _gliner_sizes(3, 11)),
        ("healthy-torchscript", "static-inputs", "python-ints"), attention=(14, 14, True),
        batch="batch_size", feeds=_gliner_feeds,
        note="GLiNER's export: TorchScript at batch 1; sizes from text_lengths.max() are data",
    ),
)}


def size_of(dim: int | str, sizes: dict[str, int]) -> int:
    if isinstance(dim, int):
        return dim
    return sum(sizes[term.strip()] for term in dim.split("+"))


def feeds(model: str, sizes: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for `model` at `sizes` (e.g. {"batch": 3, "sequence": 5}); the last row is padded."""
    if SPECS[model].feeds is not None:
        return SPECS[model].feeds(sizes, seed)
    generator = np.random.default_rng(seed)
    result = {}
    for spec in SPECS[model].inputs:
        shape = tuple(size_of(d, sizes) for d in spec.dims)
        if spec.kind == "ids":
            result[spec.name] = generator.integers(3, 99, shape, dtype=np.int64)
        elif spec.kind == "mask":
            mask = np.ones(shape, dtype=np.int64)
            if shape[0] > 1:
                mask[-1, shape[1] - shape[1] // 3 :] = 0
            result[spec.name] = mask
        else:
            result[spec.name] = generator.standard_normal(shape, dtype=np.float32)
    return result


def reference(model: str) -> torch.nn.Module:
    """A fresh, seeded, healthy wrapper: the reference for any variant of `model`."""
    return SPECS[model].make()


# -- the mechanisms ----------------------------------------------------------------------------


def _attention_with_python_ints(
    attention: torch.nn.Module, query, key, value, attention_mask, scaling=None, dropout=0.0,
    position_bias=None, freeze_sequence: bool = True, **_,
):
    """Eager attention in the pre-2023 bmm style, but with sizes taken as Python ints.

    `freeze_sequence=False` keeps the sequence lengths live and freezes batch (and heads)
    only: the model then runs at any length, at the dummy batch alone.
    """
    batch, heads = int(query.shape[0]), int(query.shape[1])
    sequence, keys, size = query.shape[2], key.shape[2], query.shape[3]
    if freeze_sequence:
        sequence, keys, size = int(sequence), int(keys), int(size)
    scaling = size**-0.5 if scaling is None else scaling
    query = query.reshape(batch * heads, sequence, size)
    weights = torch.bmm(query, key.reshape(batch * heads, keys, size).transpose(1, 2)) * scaling
    for bias in (position_bias, attention_mask):  # T5 passes its relative bias apart
        if bias is not None:
            weights = weights.view(batch, heads, sequence, keys) + bias
            weights = weights.view(batch * heads, sequence, keys)
    weights = torch.softmax(weights.float(), dim=-1)
    output = torch.bmm(weights.to(value.dtype), value.reshape(batch * heads, keys, size))
    return output.view(batch, heads, sequence, size).transpose(1, 2), None


AttentionInterface.register(FROZEN_ATTENTION, _attention_with_python_ints)
AttentionInterface.register(
    FROZEN_BATCH_ATTENTION, functools.partial(_attention_with_python_ints, freeze_sequence=False)
)
for _name in (FROZEN_ATTENTION, FROZEN_BATCH_ATTENTION):
    AttentionMaskInterface.register(_name, eager_mask)


def _deberta_split_with_python_ints(freeze_sequence: bool) -> Callable:
    """DisentangledSelfAttention.transpose_for_scores, with `int(x.size(i))` for the sizes."""

    def transpose_for_scores(self, x: torch.Tensor, attention_heads: int) -> torch.Tensor:
        batch, sequence = int(x.size(0)), x.size(1)
        sequence = int(sequence) if freeze_sequence else sequence
        x = x.view(batch, sequence, attention_heads, -1)
        return x.permute(0, 2, 1, 3).contiguous().view(batch * attention_heads, sequence, -1)

    return transpose_for_scores


def freeze_attention_sizes(wrapper: Wrapper, freeze_sequence: bool = True) -> Wrapper:
    """Make every attention take its batch (and sequence) as Python ints (in place)."""
    deberta = [
        m for m in wrapper.modules() if isinstance(m, modeling_deberta_v2.DisentangledSelfAttention)
    ]
    split = _deberta_split_with_python_ints(freeze_sequence)
    for attention in deberta:  # DeBERTa-v2 has no attention interface: patch its split
        attention.transpose_for_scores = types.MethodType(split, attention)
    if not deberta:
        implementation = FROZEN_ATTENTION if freeze_sequence else FROZEN_BATCH_ATTENTION
        wrapper.model.set_attn_implementation(implementation)
    return wrapper


# -- exporting ---------------------------------------------------------------------------------


def _example(spec: Spec, sizes: dict[str, int]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a) for a in feeds(spec.name, sizes).values())


def _axes(ports: tuple[Port, ...]) -> dict[str, dict[int, str]]:
    return {
        p.name: {i: d for i, d in enumerate(p.dims) if isinstance(d, str)}
        for p in ports if any(isinstance(d, str) for d in p.dims)
    }


def export_torchscript(
    spec: Spec, wrapper: torch.nn.Module, path: Path, sizes: dict[str, int],
    misspell_inputs: bool = False,
) -> Path:
    """TorchScript exporter; `misspell_inputs` keys the input axes by names the graph lacks."""
    inputs = _axes(spec.inputs)
    if misspell_inputs:  # singular for plural and back: the exporter only warns
        inputs = {(k[:-1] if k.endswith("s") else k + "s"): v for k, v in inputs.items()}
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            wrapper, _example(spec, sizes), str(path),
            input_names=[p.name for p in spec.inputs],
            output_names=[p.name for p in spec.outputs],
            dynamic_axes={**inputs, **_axes(spec.outputs)},
            opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    return path


def _dim_name(dim: str) -> str:
    return dim.replace(" + ", "_plus_")  # a torch.export.Dim name must be an identifier


def export_dynamo(spec: Spec, wrapper: torch.nn.Module, path: Path, sizes: dict[str, int]) -> Path:
    """The torch.export-based exporter, one `torch.export.Dim` per dynamic dim, weights inline."""
    dims = {d: torch.export.Dim(_dim_name(d)) for p in spec.inputs for d in p.dims
            if isinstance(d, str)}
    shapes = tuple({i: dims[d] for i, d in enumerate(p.dims) if isinstance(d, str)}
                   for p in spec.inputs)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(
            wrapper, _example(spec, sizes), None,
            input_names=[p.name for p in spec.inputs],
            output_names=[p.name for p in spec.outputs],
            # forward(*inputs) is one argument to torch.export: hence the nesting.
            dynamic_shapes=(shapes,),
            dynamo=True, verbose=False, optimize=True,
        )
    program.save(str(path), external_data=False)
    return path


def _quiet() -> contextlib.AbstractContextManager[None]:
    return quiet("torch._dynamo", "torch.utils._sympy", "transformers")


BUILDERS: dict[str, Callable[[Spec, Path, dict[str, int]], Path]] = {
    "healthy-torchscript": lambda s, p, z: export_torchscript(s, s.make(), p, z),
    "healthy-dynamo": lambda s, p, z: export_dynamo(s, s.make(), p, z),
    "dynamo-specialised": lambda s, p, z: export_dynamo(s, s.make(), p, z),
    "static-inputs": lambda s, p, z: export_torchscript(s, s.make(), p, z, misspell_inputs=True),
    "python-ints": lambda s, p, z: export_torchscript(s, freeze_attention_sizes(s.make()), p, z),
    "dummy-batch-1": lambda s, p, z: export_torchscript(
        s, freeze_attention_sizes(s.make(), freeze_sequence=False), p, z
    ),
}


def build(model_name: str, variant: str, directory: str | Path) -> Path:
    """Export `model_name` as `variant` to `<directory>/<model>--<variant>.onnx`, weights inline.

    Raises KeyError for a pair not in the catalogue, and whatever the exporter raises.
    """
    spec = SPECS[model_name]
    if variant not in spec.variants:
        raise KeyError(f"{model_name} has no variant {variant!r} (it has {spec.variants})")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{model_name}--{variant}.onnx"
    BUILDERS[variant](spec, path, entry(model_name, variant).dummy)
    onnx.save(onnx.load(str(path)), str(path))  # one file, whatever the exporter chose
    return path


# -- the catalogue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """What one (model, variant) is, and how it should behave in onnxruntime."""

    model: str
    variant: str
    inputs: str  # e.g. "pixel_values[batch, 3, height, width]": a name is a dim_param
    dummy: dict[str, int]  # the sizes it was traced at
    trials: tuple[dict[str, int], ...]  # the dummy, then batch 1 and batch 3 at other sizes
    frozen: str  # what the export froze, "" when healthy
    targets: tuple[tuple[int, ...], ...]  # constant Reshape targets the TorchScript healthy lacks
    error: str  # a substring of onnxruntime's error at the last trial, "" when healthy
    note: str  # about the model

    @property
    def healthy(self) -> bool:
        return self.variant.startswith("healthy")


def _attention_targets(spec: Spec, batch: int) -> tuple[tuple[int, ...], ...]:
    """The Reshape targets `_attention_with_python_ints` bakes in at the dummy sizes."""
    sequence, keys, masked = spec.attention
    rows = batch * HEADS
    targets = [(rows, sequence, HEAD_SIZE), (rows, keys, HEAD_SIZE),
               (batch, HEADS, sequence, HEAD_SIZE)]
    if masked:
        targets += [(batch, HEADS, sequence, keys), (rows, sequence, keys)]
    if spec.name.startswith("gpt2"):
        # GPT-2 merges heads by attn_output.shape and its Conv1D views by x.size(): the
        # frozen sizes flow on into three more targets.
        targets += [(batch, sequence, -1), (batch, sequence, HIDDEN), (-1, HIDDEN)]
    if spec.name in ("deberta-v2", "gliner"):
        # Its own split: [batch, sequence, heads, -1] then [batch x heads, sequence, -1]; the
        # relative embeddings (32 = 2 x position_buckets) go through it too, harmlessly.
        targets = [(batch, sequence, HEADS, -1), (rows, sequence, -1), (HEADS, 32, -1)]
    return tuple(dict.fromkeys(targets))


def entry(model: str, variant: str) -> Entry:
    """How `variant` of `model` was built and how onnxruntime treats it (verified by
    benchmarks/corpus_models.py: every trial of a healthy entry runs and matches PyTorch; a
    broken one runs at its dummy, fails at its last trial with `error`, and has `targets`)."""
    spec = SPECS[model]
    batch_one = variant == "dummy-batch-1"
    dummy = {**spec.dummy, spec.batch: 1} if batch_one else dict(spec.dummy)
    if variant == "healthy-dynamo" and spec.dynamo_dummy:
        dummy = dict(spec.dynamo_dummy)
    trials = (dummy, *spec.others)
    static = {"static-inputs": set(dummy), "dynamo-specialised": {"height", "width"}}
    dims = {p.name: [size_of(d, dummy) if d in static.get(variant, ()) else d for d in p.dims]
            for p in spec.inputs}
    if "dynamo" in variant:
        dims = {k: [_dim_name(d) if isinstance(d, str) else d for d in v] for k, v in dims.items()}
    inputs = "; ".join(f"{k}[{', '.join(map(str, v))}]" for k, v in dims.items())
    frozen, targets, error = "", (), ""
    if variant == "static-inputs":
        frozen = ("every input dim static at the dummy (dim_value); constant folding bakes some "
                  "Reshape targets too")
        error = "Got invalid dimensions for input"
    elif variant == "python-ints":
        targets = _attention_targets(spec, dummy[spec.batch])
        frozen = "Reshape targets " + ", ".join(str(list(t)) for t in targets)
        # The first Reshape to fail splits heads: [batch x heads, ...] ([batch, ...] in DeBERTa).
        first = dummy[spec.batch] * (1 if model in ("deberta-v2", "gliner") else HEADS)
        error = f"requested shape:{{{first},"
    elif variant == "dynamo-specialised":
        frozen = ("height and width static at 30 although given as Dims (the exporter "
                  "specialises instead of failing); batch stays dynamic")
        error = "Got invalid dimensions for input: pixel_values"
    elif batch_one:
        frozen = (f"batch 1 and batch x heads = {HEADS} as constants inside the Concat that "
                  "builds each attention Reshape's shape, e.g. Concat([4], Shape[2], Shape[3]) "
                  "and Concat([1], [4], Shape[2], Shape[3]); sequence dims stay live (runs at "
                  "any length at batch 1)")
        # DeBERTa's split keeps a -1: batch 3 fits [1, 5, 4, -1] silently, a MatMul fails later.
        error = ("MatMul dimension mismatch" if model == "deberta-v2"
                 else f"requested shape:{{{HEADS},")
    return Entry(model, variant, inputs, dummy, trials, frozen, targets, error, spec.note)


CORPUS: list[tuple[str, str]] = [
    (name, variant) for name, spec in SPECS.items() for variant in spec.variants
]


# -- third-party files -------------------------------------------------------------------------


@dataclass(frozen=True)
class ThirdParty:
    """An ONNX file inside a pip package, and input shapes to try it at (sizes by input name)."""

    distribution: str
    path: str  # inside the distribution's install location
    trials: tuple[dict[str, tuple[int, ...]], ...]
    note: str = ""


def _silero(name: str, note: str, sr: bool = True, longer: bool = True) -> ThirdParty:
    def trial(batch: int, samples: int) -> dict[str, tuple[int, ...]]:
        return {"input": (batch, samples), "state": (2, batch, 128), **({"sr": ()} if sr else {})}

    trials = (trial(1, 576), trial(3, 576)) + ((trial(2, 1088),) if longer else ())
    return ThirdParty("silero-vad", f"silero_vad/data/{name}", trials, note)


def _light(name: str) -> ThirdParty:
    data = "gpu_0/data_0" if name in ("resnet50", "shufflenet", "zfnet512") else "data_0"
    return ThirdParty(
        "onnx", f"onnx/backend/test/data/light/light_{name}.onnx",
        ({data: (1, 3, 224, 224)}, {data: (2, 3, 224, 224)}),
        "Caffe2-era zoo model, weights replaced by ConstantOfShape: static [1, 3, 224, 224]",
    )


_OCR = "rapidocr_onnxruntime/models"
THIRD_PARTY: dict[str, ThirdParty] = {f"{t.distribution}:{Path(t.path).name}": t for t in (
    _silero("silero_vad.onnx", "spox; dims unnamed (None); one STFT frame only: < 768 samples"),
    _silero("silero_vad_16k_op15.onnx", "torch 2.3 export; [batch, sequence]; < 768 samples"),
    _silero("silero_vad_half.onnx", "no sr input; < 768 samples", sr=False),
    _silero("silero_vad_op18_ifless.onnx", "torch 2.9 export; runs at any length"),
    _silero("silero_vad_openvino_16k.onnx", "fully static [1, 576]", sr=False, longer=False),
    ThirdParty(
        "silero-vad", "silero_vad/data/silero_vad_16k_sequence.onnx",
        ({"input": (1, 576), "h": (1, 1, 128), "c": (1, 1, 128)},
         {"input": (5, 576), "h": (1, 1, 128), "c": (1, 1, 128)}),
        "[sequence_length, 576] windows, LSTM state [1, 1, 128]",
    ),
    ThirdParty("rapidocr-onnxruntime", f"{_OCR}/ch_PP-OCRv4_det_infer.onnx",
               ({"x": (1, 3, 64, 96)}, {"x": (2, 3, 128, 64)}), "Paddle2ONNX dim names"),
    ThirdParty("rapidocr-onnxruntime", f"{_OCR}/ch_PP-OCRv4_rec_infer.onnx",
               ({"x": (1, 3, 48, 160)}, {"x": (3, 3, 48, 320)}), "height dim_param is '?'"),
    ThirdParty("rapidocr-onnxruntime", f"{_OCR}/ch_ppocr_mobile_v2.0_cls_infer.onnx",
               ({"x": (1, 3, 48, 192)}, {"x": (3, 3, 48, 100)}), "batch unnamed, '?' spatial"),
    ThirdParty("magika", "magika/models/standard_v3_3/model.onnx",
               ({"bytes": (1, 2048)}, {"bytes": (3, 2048)}), "tf2onnx: batch is 'unk__214'"),
    *(_light(name) for name in ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2",
                                "resnet50", "shufflenet", "squeezenet", "vgg19", "zfnet512")),
)}


def third_party_models() -> list[tuple[str, Path]]:
    """The THIRD_PARTY files whose packages are installed (found without importing them)."""
    found = []
    for name, model in THIRD_PARTY.items():
        try:
            path = Path(importlib.metadata.distribution(model.distribution).locate_file(model.path))
        except importlib.metadata.PackageNotFoundError:
            continue
        if path.is_file():
            found.append((name, path))
    return found


def third_party_feeds(name: str, trial: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for THIRD_PARTY[name] at its `trial`-th shapes (silero's `sr` is 16000)."""
    generator = np.random.default_rng(seed)
    feeds = {}
    for input_name, shape in THIRD_PARTY[name].trials[trial].items():
        if input_name == "sr":
            feeds[input_name] = np.array(16000, dtype=np.int64)
        elif input_name == "bytes":  # magika reads byte values as int32
            feeds[input_name] = generator.integers(0, 256, shape, dtype=np.int32)
        else:
            feeds[input_name] = generator.random(shape, dtype=np.float32)
    return feeds
