"""Models with the shape of OneIE's (GAIA-IE/oneie oneie/model.py), small and self-contained.

`OneIELike`: a BERT encoder under `bert` built with `output_hidden_states` on; the
extra-layer concat OneIE's `use_extra_bert` does (the last hidden layer beside
a lower one); span (entity), trigger and relation linear heads; and a
CRF-style Viterbi decoder over the entity label scores that returns label
paths as Python lists, as OneIE's `viterbi_decode` does.

`OneIE`: OneIE's inference path where a graft can break it, as published: `encode`
calls `self.bert(piece_idxs, attention_mask=attention_masks)` with a FloatTensor
mask and reads `all_bert_outputs[0]` and `all_bert_outputs[2][self.extra_bert]`
(a BertModel with its pooler: last_hidden_state, pooler_output, hidden_states),
keeps each word's first piece, and `predict` calls `self.eval()`, decodes under
`torch.no_grad()` to graphs, and calls `self.train()` at its end. Its heads and
decoder are shorter than OneIE's (no beam search, no global features).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from transformers import BertConfig, BertModel

ENTITY_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-GPE", "I-GPE")
TRIGGER_LABELS = ("O", "B-Attack", "I-Attack", "B-Die", "I-Die", "B-Meet", "I-Meet")
ENTITY_TYPES = ("PER", "ORG", "GPE")
EVENT_TYPES = ("Attack", "Die", "Meet")
RELATION_TYPES = ("O", "ORG-AFF", "PART-WHOLE", "PHYS")
ROLE_TYPES = ("O", "Attacker", "Victim", "Place")


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


class Batch(NamedTuple):
    """The fields of OneIE's evaluation batch that `predict` reads."""

    piece_idxs: torch.Tensor  # LongTensor [batch, pieces]: [CLS] pieces [SEP], 0-padded
    attention_masks: torch.Tensor  # FloatTensor, as OneIE's collate_fn builds it
    token_lens: list[list[int]]  # pieces per word
    token_nums: torch.Tensor  # words per sentence


class Graph(NamedTuple):
    entities: tuple  # (start, end, type)
    triggers: tuple  # (start, end, event type)
    relations: tuple  # (entity, entity, relation type)
    roles: tuple  # (trigger, entity, role)


def collate(sentences: list[list[list[int]]]) -> Batch:
    """Sentences of words of piece ids -> OneIE's padded batch ([CLS] is 1, [SEP] 2)."""
    pieces = [[1, *(p for word in words for p in word), 2] for words in sentences]
    width = max(len(p) for p in pieces)
    return Batch(
        torch.LongTensor([p + [0] * (width - len(p)) for p in pieces]),
        torch.FloatTensor([[1.0] * len(p) + [0.0] * (width - len(p)) for p in pieces]),
        [[len(word) for word in words] for words in sentences],
        torch.LongTensor([len(words) for words in sentences]),
    )


class BIOViterbi(torch.nn.Module):
    """Best label path under learned transitions; I-X only after B-X or I-X."""

    def __init__(self, labels: tuple[str, ...]) -> None:
        super().__init__()
        transition = torch.randn(len(labels), len(labels))  # [from, to]
        for to, label in enumerate(labels):
            for before, previous in enumerate(labels):
                if label.startswith("I-") and previous not in (f"B-{label[2:]}", label):
                    transition[before, to] = -100.0
        self.transition = torch.nn.Parameter(transition)
        self.register_buffer("first", torch.tensor(
            [-100.0 if label.startswith("I-") else 0.0 for label in labels]))

    def forward(self, scores: torch.Tensor) -> list[int]:
        best, back = scores[0] + self.first, []
        for step in scores[1:]:
            best, index = (best[:, None] + self.transition).max(0)
            best = best + step
            back.append(index)
        path = [int(best.argmax())]
        for index in reversed(back):
            path.append(int(index[path[-1]]))
        return path[::-1]


def spans(path: list[int], labels: tuple[str, ...]) -> list[tuple[int, int, str]]:
    """BIO label path -> (start, end, type) spans."""
    found: list[list] = []
    for i, label in enumerate(labels[t] for t in path):
        if label.startswith("I-") and found and found[-1][1] == i and found[-1][2] == label[2:]:
            found[-1][1] = i + 1
        elif label != "O":
            found.append([i, i + 1, label[2:]])
    return [tuple(span) for span in found]


class OneIE(torch.nn.Module):
    def __init__(self, bert_config: BertConfig, extra_bert: int = -3, hidden: int = 24,
                 dropout: float = 0.4) -> None:
        super().__init__()
        bert_config.output_hidden_states = True
        self.bert = BertModel(bert_config)  # with its pooler, as OneIE builds it
        self.extra_bert = extra_bert
        self.use_extra_bert = True
        self.bert_dim = 2 * bert_config.hidden_size
        self.bert_dropout = torch.nn.Dropout(dropout)

        def ffn(width: int, labels: int) -> torch.nn.Module:  # OneIE's Linears
            return torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.ReLU(),
                                       torch.nn.Dropout(dropout), torch.nn.Linear(hidden, labels))

        self.entity_label_ffn = torch.nn.Linear(self.bert_dim, len(ENTITY_LABELS))
        self.trigger_label_ffn = torch.nn.Linear(self.bert_dim, len(TRIGGER_LABELS))
        self.entity_type_ffn = ffn(self.bert_dim, len(ENTITY_TYPES))
        self.event_type_ffn = ffn(self.bert_dim, len(EVENT_TYPES))
        self.relation_type_ffn = ffn(2 * self.bert_dim, len(RELATION_TYPES))
        self.role_type_ffn = ffn(2 * self.bert_dim, len(ROLE_TYPES))
        self.entity_crf = BIOViterbi(ENTITY_LABELS)
        self.trigger_crf = BIOViterbi(TRIGGER_LABELS)

    def encode(self, piece_idxs: torch.Tensor, attention_masks: torch.Tensor,
               token_lens: list[list[int]]) -> torch.Tensor:
        batch_size, _ = piece_idxs.size()
        all_bert_outputs = self.bert(piece_idxs, attention_mask=attention_masks)
        bert_outputs = all_bert_outputs[0]
        if self.use_extra_bert:
            extra_bert_outputs = all_bert_outputs[2][self.extra_bert]
            bert_outputs = torch.cat([bert_outputs, extra_bert_outputs], dim=2)
        # Each word's first piece; + 1 skips [CLS], and padded words read [CLS] (-1 + 1).
        words = max(len(lens) for lens in token_lens)
        offsets = [[sum(lens[:i]) for i in range(len(lens))] + [-1] * (words - len(lens))
                   for lens in token_lens]
        offsets = piece_idxs.new(offsets).unsqueeze(-1).expand(batch_size, -1,
                                                               self.bert_dim) + 1
        return self.bert_dropout(torch.gather(bert_outputs, 1, offsets))

    def predict(self, batch: Batch) -> tuple[list[Graph], torch.Tensor]:
        self.eval()
        with torch.no_grad():
            bert_outputs = self.encode(batch.piece_idxs, batch.attention_masks,
                                       batch.token_lens)
            entity_scores = self.entity_label_ffn(bert_outputs)
            trigger_scores = self.trigger_label_ffn(bert_outputs)
            graphs = []
            for i, n in enumerate(batch.token_nums.tolist()):
                entities = spans(self.entity_crf(entity_scores[i, :n]), ENTITY_LABELS)
                triggers = spans(self.trigger_crf(trigger_scores[i, :n]), TRIGGER_LABELS)
                graphs.append(self.decode(bert_outputs[i], entities, triggers))
        self.train()
        return graphs, bert_outputs

    def decode(self, words: torch.Tensor, entities: list, triggers: list) -> Graph:
        """Span types by argmax; relations and roles that are not O."""
        def reprs(found: list) -> torch.Tensor:
            return torch.stack([words[s:e].mean(0) for s, e, _ in found]) if found else \
                words.new_zeros(0, self.bert_dim)

        entity, trigger = reprs(entities), reprs(triggers)
        types = self.entity_type_ffn(entity).argmax(-1).tolist()
        events = self.event_type_ffn(trigger).argmax(-1).tolist()
        relations, roles = [], []
        for a in range(len(entities)):
            for b in range(a + 1, len(entities)):
                kind = int(self.relation_type_ffn(torch.cat([entity[a], entity[b]])).argmax())
                if kind:
                    relations.append((a, b, RELATION_TYPES[kind]))
            for t in range(len(triggers)):
                role = int(self.role_type_ffn(torch.cat([trigger[t], entity[a]])).argmax())
                if role:
                    roles.append((t, a, ROLE_TYPES[role]))
        return Graph(
            tuple((s, e, ENTITY_TYPES[k]) for (s, e, _), k in zip(entities, types, strict=True)),
            tuple((s, e, EVENT_TYPES[k]) for (s, e, _), k in zip(triggers, events, strict=True)),
            tuple(relations), tuple(sorted(roles)))
