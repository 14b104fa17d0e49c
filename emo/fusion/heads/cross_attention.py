"""Cross-attention fusion (the audio-visual paper), for any two or all three modalities.

Each modality is projected to d_model (512). For every ordered pair (q, k):
CA(q, k) = softmax(Q_q K_k^T / sqrt(d)) V_k, multi-head, with the key padding mask of k.
The cross-attended sequences (length and mask of q each, plus a learned pair embedding so
the encoder knows which pair a frame came from) are concatenated along time and go
through a transformer encoder (3 blocks, 8 heads, FFN 1024), pooling (masked mean by default), linear.
Each input is first reduced to `target_rate` Hz (wav2vec2's 50 Hz frames -> 25 Hz by default).
Two modalities give 2 pairs (CA(V,A), CA(A,V)); three give 6.

Absent modality (dropped from the batch, or no frame for a clip): its sequence is a single
learned "missing" token (see FusionInputs), used as query and as key like real frames.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from emo.fusion.heads.branches import FACE_DEFAULTS, FusionInputs
from emo.fusion.heads.layers import SequenceEncoder
from emo.fusion.heads.pooling import build_pooling
from emo.fusion.params import FACE_PARAMS, FACE_RULES, SEQUENCE_PARAMS, SEQUENCE_RULES
from emo.fusion.heads.registry import MODALITIES, Head, Requires, register_head
from emo.fusion.heads.unimodal import TIME_DEFAULTS


@register_head
class CrossAttentionHead(Head):
    name = "cross_attention"
    description = "pairwise multi-head cross-attention between modalities, fused sequence -> encoder, masked mean, linear"
    requires = Requires(MODALITIES, 2, 3, faces_ok=True)
    absent_ok = True
    defaults = {"d_model": 512, "heads": 8, "blocks": 3, "ffn": 1024, "dropout": 0.1, **TIME_DEFAULTS, **FACE_DEFAULTS}
    params = {**SEQUENCE_PARAMS, **FACE_PARAMS}
    rules = SEQUENCE_RULES + FACE_RULES

    def __init__(self, inputs, n_classes, **hparams):
        super().__init__(inputs, n_classes, **hparams)
        hp = self.hparams
        d = hp["d_model"]  # a multiple of heads: checked with the declared params (SEQUENCE_RULES)
        self.fusion_inputs = FusionInputs(self.inputs, d, hp)
        self.pairs = list(itertools.permutations(self.inputs, 2))
        self.cross = nn.ModuleList(
            nn.MultiheadAttention(d, hp["heads"], dropout=hp["dropout"], batch_first=True) for _ in self.pairs
        )
        self.pair_embedding = nn.Parameter(torch.randn(len(self.pairs), d) * 0.02)
        self.encoder = SequenceEncoder(d, hp["heads"], hp["blocks"], hp["ffn"], hp["dropout"])
        self.pool = build_pooling(hp["pooling"], d, f"head {self.name!r}")
        self.dropout = nn.Dropout(hp["dropout"])
        self.classifier = nn.Linear(self.pool.out_dim, self.n_classes)

    def forward(self, batch: dict) -> torch.Tensor:
        sequences = self.fusion_inputs(batch, self.batch_size(batch))
        fused, masks = [], []
        for i, (q, k) in enumerate(self.pairs):
            query, query_mask = sequences[q]
            key, key_mask = sequences[k]
            # Every key sequence has at least one real slot (frames or the missing token),
            # so no attention row is fully masked.
            attended, _ = self.cross[i](query, key, key, key_padding_mask=~key_mask, need_weights=False)
            fused.append(attended + self.pair_embedding[i])
            masks.append(query_mask)
        seq, mask = torch.cat(fused, dim=1), torch.cat(masks, dim=1)
        h = self.encoder(seq, mask)
        return self.classifier(self.dropout(self.pool(h, mask)))
