"""Tiny random encoders of every supported type, and composite checkpoints holding them.

Sizes are small and chosen to collide with no export dummy; a few types need
settings of their own to build at all (ModernBERT's token ids inside its
vocabulary, Funnel's blocks, MPNet's 32 relative-attention buckets).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, PretrainedConfig

from extractor.resolve.encoders import ENCODER_TYPES, encoder_class

SMALL = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=256,
)
SPECIAL: dict[str, dict[str, Any]] = {
    "distilbert": dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                       max_position_embeddings=256),
    "albert": dict(embedding_size=16),
    "electra": dict(embedding_size=16),
    "deberta": dict(relative_attention=True, pos_att_type=["c2p", "p2c"]),
    "deberta-v2": dict(relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=16,
                       norm_rel_ebd="layer_norm", share_att_key=True,
                       position_biased_input=False, type_vocab_size=0, layer_norm_eps=1e-7),
    "mpnet": dict(relative_attention_num_buckets=32, max_position_embeddings=258),
    "modernbert": dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1,
                       sep_token_id=2, global_attn_every_n_layers=2, local_attention=16,
                       num_hidden_layers=3),
    "xlm": dict(vocab_size=99, emb_dim=32, n_layers=2, n_heads=4, max_position_embeddings=256,
                pad_token_id=2),
    "funnel": dict(vocab_size=99, d_model=32, n_head=4, d_head=8, d_inner=37, block_sizes=[1, 1],
                   num_decoder_layers=1, architectures=["FunnelModel"]),
    "longformer": dict(attention_window=[8, 8], max_position_embeddings=258, pad_token_id=1),
    "big_bird": dict(attention_type="original_full", block_size=4, num_random_blocks=2),
    "squeezebert": dict(embedding_size=32, q_groups=2, k_groups=2, v_groups=2,
                        post_attention_groups=2, intermediate_groups=1, output_groups=1),
    "mobilebert": dict(embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16,
                       num_feedforward_networks=2),
    "roberta": dict(max_position_embeddings=258, pad_token_id=1, type_vocab_size=1),
    "xlm-roberta": dict(max_position_embeddings=258, pad_token_id=1, type_vocab_size=1),
    "camembert": dict(max_position_embeddings=258, pad_token_id=1, type_vocab_size=1),
    "data2vec-text": dict(max_position_embeddings=258, pad_token_id=1, type_vocab_size=1),
    "xlm-roberta-xl": dict(max_position_embeddings=258, pad_token_id=1, type_vocab_size=1),
    "rembert": dict(input_embedding_size=16, output_embedding_size=24),
    "t5": dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4),
    "mt5": dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4),
    "umt5": dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4),
    "fnet": dict(num_attention_heads=None),
}


def tiny_config(model_type: str, **values: Any) -> PretrainedConfig:
    special = SPECIAL.get(model_type, {})
    base = {} if any(k in special for k in ("dim", "emb_dim", "d_model")) else dict(SMALL)
    merged = {k: v for k, v in {**base, **special, **values}.items() if v is not None}
    return AutoConfig.for_model(model_type, **merged)


def tiny_encoder(model_type: str, seed: int = 0, **values: Any) -> torch.nn.Module:
    """A randomly initialised encoder, in eval mode, with weights that are not all alike."""
    torch.manual_seed(seed)
    config = tiny_config(model_type, **values)
    model = encoder_class(config)(config).eval()
    with torch.no_grad():  # biases and norms start at 0/1: make every weight count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def composite_checkpoint(
    directory: Path, model_type: str, prefix: str = "encoder.", seed: int = 0
) -> tuple[Path, torch.nn.Module]:
    """A research-style checkpoint: the encoder under `prefix` beside task heads, and a
    config dict naming a directory (beside the checkpoint) that holds the encoder's config."""
    encoder = tiny_encoder(model_type, seed)
    hidden = encoder.config.hidden_size if hasattr(encoder.config, "hidden_size") else 32
    state = {prefix + k: v for k, v in encoder.state_dict().items()}
    state["classifier.weight"] = torch.randn(5, hidden)
    state["crf.transitions"] = torch.randn(7, 7)
    config_dir = directory / f"tiny-{model_type}"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.json").write_text(json.dumps(encoder.config.to_dict()))
    path = directory / f"{model_type}.bin"
    torch.save({"model": state, "config": {"encoder_name": config_dir.name, "lr": 1e-5}}, path)
    return path, encoder


__all__ = ["ENCODER_TYPES", "SPECIAL", "composite_checkpoint", "tiny_config", "tiny_encoder"]
