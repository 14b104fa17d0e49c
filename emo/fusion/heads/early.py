"""Early fusion: every modality projected to one width, joined along time, one encoder.

Each modality's sequence gets its own time positions plus a learned modality embedding,
then all are concatenated (with their masks) and pass a single transformer encoder,
masked mean pooling and a linear classifier.

Absent modality (dropped from the batch, or no frame for a clip): its place is taken by a
learned "missing" token (see FusionInputs), so any non-empty subset of the inputs works.
"""

from __future__ import annotations

import torch
from torch import nn

from emo.fusion.heads.branches import FACE_DEFAULTS, FusionInputs
from emo.fusion.heads.layers import SequenceEncoder
from emo.fusion.heads.pooling import build_pooling
from emo.fusion.params import FACE_PARAMS, FACE_RULES, SEQUENCE_PARAMS, SEQUENCE_RULES
from emo.fusion.heads.registry import MODALITIES, Head, Requires, register_head
from emo.fusion.heads.unimodal import SEQUENCE_DEFAULTS


@register_head
class EarlyFusionHead(Head):
    name = "early"
    description = "modalities projected to one width, concatenated along time with modality embeddings, one encoder"
    requires = Requires(MODALITIES, 2, 3, faces_ok=True)
    absent_ok = True
    defaults = {**SEQUENCE_DEFAULTS, **FACE_DEFAULTS}
    params = {**SEQUENCE_PARAMS, **FACE_PARAMS}
    rules = SEQUENCE_RULES + FACE_RULES

    def __init__(self, inputs, n_classes, **hparams):
        super().__init__(inputs, n_classes, **hparams)
        hp = self.hparams
        d = hp["d_model"]
        self.fusion_inputs = FusionInputs(self.inputs, d, hp)
        self.modality_embedding = nn.Parameter(torch.randn(len(self.inputs), d) * 0.02)
        self.encoder = SequenceEncoder(d, hp["heads"], hp["blocks"], hp["ffn"], hp["dropout"])
        self.pool = build_pooling(hp["pooling"], d, f"head {self.name!r}")
        self.dropout = nn.Dropout(hp["dropout"])
        self.classifier = nn.Linear(self.pool.out_dim, self.n_classes)

    def forward(self, batch: dict) -> torch.Tensor:
        sequences = self.fusion_inputs(batch, self.batch_size(batch))
        seqs, masks = [], []
        for i, (seq, mask) in enumerate(sequences.values()):
            seqs.append(seq + self.modality_embedding[i])
            masks.append(mask)
        seq, mask = torch.cat(seqs, dim=1), torch.cat(masks, dim=1)
        h = self.encoder(seq, mask)
        return self.classifier(self.dropout(self.pool(h, mask)))
