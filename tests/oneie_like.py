"""A model with the shape of OneIE's (GAIA-IE/oneie model.py), small and self-contained.

A BERT encoder under `bert` built with `output_hidden_states` on; the
extra-layer concat OneIE's `use_extra_bert` does (the last hidden layer beside
a lower one); span (entity), trigger and relation linear heads; and a
CRF-style Viterbi decoder over the entity label scores that returns label
paths as Python lists, as OneIE's `viterbi_decode` does.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertModel


class OneIELike(torch.nn.Module):
    def __init__(self, bert_config: BertConfig, extra_bert: int = -3, labels: int = 7,
                 triggers: int = 9, relations: int = 5) -> None:
        super().__init__()
        bert_config.output_hidden_states = True
        self.bert = BertModel(bert_config)
        self.extra_bert = extra_bert
        width = 2 * bert_config.hidden_size
        self.entity_label_ffn = torch.nn.Linear(width, labels)
        self.trigger_label_ffn = torch.nn.Linear(width, triggers)
        self.relation_type_ffn = torch.nn.Sequential(
            torch.nn.Linear(2 * width, 32), torch.nn.ReLU(), torch.nn.Linear(32, relations))
        self.entity_crf = torch.nn.Parameter(torch.randn(labels, labels) * 0.1)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        outputs = self.bert(input_ids, attention_mask=attention_mask)
        hidden = outputs[0]
        extra = outputs[2][self.extra_bert]  # OneIE: all_bert_outputs[config.extra_bert]
        return torch.cat([hidden, extra], dim=2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        features = self.encode(input_ids, attention_mask)
        entity = self.entity_label_ffn(features)
        trigger = self.trigger_label_ffn(features)
        first, second = features[:, 1:2].expand(-1, features.shape[1] - 1, -1), features[:, 1:]
        relation = self.relation_type_ffn(torch.cat([first, second], dim=2))
        lengths = attention_mask.sum(1).tolist()
        return {
            "entity_logits": entity,
            "trigger_logits": trigger,
            "relation_logits": relation,
            "entity_paths": [self.viterbi(entity[i, :n]) for i, n in enumerate(lengths)],
        }

    def viterbi(self, scores: torch.Tensor) -> list[int]:
        best, back = scores[0], []
        for step in scores[1:]:
            total = best[:, None] + self.entity_crf + step[None, :]
            best, index = total.max(0)
            back.append(index)
        path = [int(best.argmax())]
        for index in reversed(back):
            path.append(int(index[path[-1]]))
        return path[::-1]


def checkpoint_of(model: OneIELike, bert_model_name: str) -> dict:
    """What OneIE's train.py saves for it."""
    return {"model": model.state_dict(),
            "config": {"bert_model_name": bert_model_name, "use_extra_bert": True,
                       "extra_bert": model.extra_bert, "multi_piece_strategy": "first"},
            "vocabs": {"entity_label": {"O": 0}}, "valid": {"event_role": {101}}}
