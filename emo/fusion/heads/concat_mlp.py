"""Pooled concatenation (the speech-text paper): pool each modality (masked mean as in the paper,
or `pooling=stats|attentive`), concatenate, FC -> ReLU -> dropout -> FC. No attention over
time, so no temporal reduction either.

Features are pooled at their own width after the layer mix (no projection); face crops go
through the patch encoder first. Absent modality (dropped from the batch, or no frame for
a clip): its pooled vector is replaced by a learned "missing" vector of the same width.
"""

from __future__ import annotations

import torch
from torch import nn

from emo.fusion.heads.branches import FACE_DEFAULTS, build_frontend, check_mask
from emo.fusion.heads.pooling import build_pooling
from emo.fusion.params import DROPOUT, FACE_PARAMS, FACE_RULES, POOLING, Param
from emo.fusion.heads.registry import MODALITIES, Head, Requires, register_head


@register_head
class ConcatMLPHead(Head):
    name = "concat_mlp"
    description = "masked-mean pooled modalities concatenated, FC-ReLU-FC"
    requires = Requires(MODALITIES, 2, 3, faces_ok=True)
    absent_ok = True
    defaults = {"hidden": 256, "dropout": 0.1, "pooling": "mean", **FACE_DEFAULTS}
    params = {"hidden": Param(int, 1, 65536, help="width of the hidden layer"), "dropout": DROPOUT, "pooling": POOLING, **FACE_PARAMS}
    rules = FACE_RULES

    def __init__(self, inputs, n_classes, **hparams):
        super().__init__(inputs, n_classes, **hparams)
        hp = self.hparams
        self.frontends = nn.ModuleDict({key: build_frontend(key, spec, hp) for key, spec in self.inputs.items()})
        self.pools = nn.ModuleDict(
            {key: build_pooling(hp["pooling"], f.out_dim, f"head {self.name!r}") for key, f in self.frontends.items()}
        )
        self.missing = nn.ParameterDict(
            {key: nn.Parameter(torch.zeros(pool.out_dim)) for key, pool in self.pools.items()}
        )
        width = sum(pool.out_dim for pool in self.pools.values())
        self.mlp = nn.Sequential(
            nn.Linear(width, hp["hidden"]), nn.ReLU(), nn.Dropout(hp["dropout"]), nn.Linear(hp["hidden"], self.n_classes)
        )

    def forward(self, batch: dict) -> torch.Tensor:
        n_clips = self.batch_size(batch)
        pooled = []
        for key, frontend in self.frontends.items():
            missing = self.missing[key].expand(n_clips, -1)
            if key in batch:
                x, mask = batch[key]
                check_mask(key, x, mask)
                vector = self.pools[key](frontend(x, mask), mask)
                pooled.append(torch.where(mask.any(dim=1, keepdim=True), vector, missing))
            else:
                pooled.append(missing)
        return self.mlp(torch.cat(pooled, dim=1))
