"""Configurations of well-known encoders, for checkpoints that only name theirs.

OneIE stores `bert_model_name='bert-large-cased'` and nothing else; without
a local copy or a cache entry, this table is the only offline source. Each
entry is the published config's values that matter; a name is matched with or
without its Hub organisation. Entries are still checked against the weights.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

_BERT_BASE = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
)
_BERT_LARGE = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
)
_ROBERTA = dict(
    max_position_embeddings=514,
    type_vocab_size=1,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    layer_norm_eps=1e-5,
)
_DISTILBERT = dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072)
# Well-known encoders: name -> (model_type, config values). Checked against shapes before use.
BUILTIN_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "bert-base-uncased": ("bert", {**_BERT_BASE, "vocab_size": 30522}),
    "bert-base-cased": ("bert", {**_BERT_BASE, "vocab_size": 28996}),
    "bert-large-uncased": ("bert", {**_BERT_LARGE, "vocab_size": 30522}),
    "bert-large-cased": ("bert", {**_BERT_LARGE, "vocab_size": 28996}),
    "bert-base-multilingual-cased": ("bert", {**_BERT_BASE, "vocab_size": 119547}),
    "bert-base-chinese": ("bert", {**_BERT_BASE, "vocab_size": 21128}),
    "allenai/scibert_scivocab_uncased": ("bert", {**_BERT_BASE, "vocab_size": 31090}),
    "sentence-transformers/all-MiniLM-L6-v2": (
        "bert",
        dict(
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1536,
            vocab_size=30522,
        ),
    ),
    "roberta-base": ("roberta", {**_BERT_BASE, **_ROBERTA, "vocab_size": 50265}),
    "roberta-large": ("roberta", {**_BERT_LARGE, **_ROBERTA, "vocab_size": 50265}),
    "xlm-roberta-base": ("xlm-roberta", {**_BERT_BASE, **_ROBERTA, "vocab_size": 250002}),
    "xlm-roberta-large": ("xlm-roberta", {**_BERT_LARGE, **_ROBERTA, "vocab_size": 250002}),
    "distilbert-base-uncased": ("distilbert", {**_DISTILBERT, "vocab_size": 30522}),
    "distilbert-base-cased": ("distilbert", {**_DISTILBERT, "vocab_size": 28996}),
    "google/electra-small-discriminator": (
        "electra",
        dict(
            embedding_size=128,
            hidden_size=256,
            num_hidden_layers=12,
            num_attention_heads=4,
            intermediate_size=1024,
            vocab_size=30522,
        ),
    ),
    "google/electra-base-discriminator": (
        "electra",
        {**_BERT_BASE, "embedding_size": 768, "vocab_size": 30522},
    ),
    "google/electra-large-discriminator": (
        "electra",
        {**_BERT_LARGE, "embedding_size": 1024, "vocab_size": 30522},
    ),
}
# Hub organisations the classic names moved under; a name matches with or without them.
HUB_ORGS = (
    "google-bert/",
    "FacebookAI/",
    "distilbert/",
    "google/",
    "sentence-transformers/",
    "microsoft/",
)

_DEBERTA_V3 = dict(
    relative_attention=True,
    position_buckets=256,
    norm_rel_ebd="layer_norm",
    share_att_key=True,
    pos_att_type=["p2c", "c2p"],
    layer_norm_eps=1e-7,
    max_relative_positions=-1,
    position_biased_input=False,
    type_vocab_size=0,
    max_position_embeddings=512,
    vocab_size=128100,
)
BUILTIN_CONFIGS.update({
    # GLiNER's default backbones (its older configs only name them).
    "microsoft/deberta-v3-xsmall": ("deberta-v2", {
        **_DEBERTA_V3, "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
        "intermediate_size": 1536}),
    "microsoft/deberta-v3-small": ("deberta-v2", {
        **_DEBERTA_V3, "hidden_size": 768, "num_hidden_layers": 6, "num_attention_heads": 12,
        "intermediate_size": 3072}),
    "microsoft/deberta-v3-base": ("deberta-v2", {**_DEBERTA_V3, **_BERT_BASE}),
    "microsoft/deberta-v3-large": ("deberta-v2", {**_DEBERTA_V3, **_BERT_LARGE}),
    "microsoft/mdeberta-v3-base": ("deberta-v2", {
        **_DEBERTA_V3, **_BERT_BASE, "vocab_size": 251000}),
})


def builtin_config(name: str) -> PretrainedConfig | None:
    """The table's config for `name` (with or without its Hub organisation), or None."""
    for alias in hub_aliases(name):
        if alias in BUILTIN_CONFIGS:
            model_type, values = BUILTIN_CONFIGS[alias]
            return AutoConfig.for_model(model_type, **values)
    return None


def hub_aliases(name: str) -> list[str]:
    bare = name.split("/", 1)[1] if name.startswith(HUB_ORGS) else name
    if "/" in bare:  # an organisation of its own: no aliases
        return [name]
    return list(dict.fromkeys([name, bare, *(org + bare for org in HUB_ORGS)]))
