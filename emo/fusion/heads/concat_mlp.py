"""Pooled concatenation (the speech-text paper): masked-mean pool each modality, concatenate,
FC -> ReLU -> dropout -> FC.

Features are pooled at their own width after the layer mix (no projection); face crops go
through the patch encoder first. Absent modality (dropped from the batch, or no frame for
a clip): its pooled vector is replaced by a learned "missing" vector of the same width.
"""

from __future__ import annotations

import torch
from torch import nn

from emo.fusion.heads.branches import FACE_DEFAULTS, build_frontend, check_mask
from emo.fusion.heads.layers import masked_mean
from emo.fusion.params import DROPOUT, FACE_PARAMS, FACE_RULES, Param
from emo.fusion.heads.registry import MODALITIES, Head, Requires, register_head


@register_head
class ConcatMLPHead(Head):
    name = "concat_mlp"
    description = "masked-mean pooled modalities concatenated, FC-ReLU-FC"
    requires = Requires(MODALITIES, 2, 3, faces_ok=True)
    absent_ok = True
    defaults = {"hidden": 256, "dropout": 0.1, **FACE_DEFAULTS}
    params = {"hidden": Param(int, 1, 65536, help="width of the hidden layer"), "dropout": DROPOUT, **FACE_PARAMS}
    rules = FACE_RULES

    def __init__(self, inputs, n_classes, **hparams):
        super().__init__(inputs, n_classes, **hparams)
        hp = self.hparams
        self.frontends = nn.ModuleDict({key: build_frontend(key, spec, hp) for key, spec in self.inputs.items()})
        self.missing = nn.ParameterDict(
            {key: nn.Parameter(torch.zeros(frontend.out_dim)) for key, frontend in self.frontends.items()}
        )
        width = sum(frontend.out_dim for frontend in self.frontends.values())
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
                vector = masked_mean(frontend(x, mask), mask)
                pooled.append(torch.where(mask.any(dim=1, keepdim=True), vector, missing))
            else:
                pooled.append(missing)
        return self.mlp(torch.cat(pooled, dim=1))
