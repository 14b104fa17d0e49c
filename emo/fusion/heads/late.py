"""Late fusion: one unimodal head per modality, their class probabilities combined.

combine="mean":    p = mean over modalities of softmax(logits_m)
combine="learned": p = sum_m w_m softmax(logits_m), w = softmax of learned per-modality scores
The head returns log p as logits, so cross-entropy on them is the NLL of the mixture.

Absent modality (dropped from the batch, or no frame for a clip): it gets weight 0 and the
remaining weights are renormalised, i.e. the decision is made by the modalities present.
"""

from __future__ import annotations

import torch
from torch import nn

from emo.fusion.heads.branches import FACE_DEFAULTS
from emo.fusion.params import FACE_PARAMS, FACE_RULES, SEQUENCE_PARAMS, SEQUENCE_RULES, Param
from emo.fusion.heads.registry import HEADS, MODALITIES, Head, Requires, modality_of, register_head
from emo.fusion.heads.unimodal import SEQUENCE_DEFAULTS

COMBINES = ("mean", "learned")


@register_head
class LateFusionHead(Head):
    name = "late"
    description = "one unimodal head per modality; probabilities averaged (or learned softmax weights)"
    requires = Requires(MODALITIES, 2, 3, faces_ok=True)
    absent_ok = True
    defaults = {**SEQUENCE_DEFAULTS, **FACE_DEFAULTS, "combine": "mean"}
    params = {**SEQUENCE_PARAMS, **FACE_PARAMS, "combine": Param(str, choices=COMBINES, help="how modality probabilities combine")}
    rules = SEQUENCE_RULES + FACE_RULES

    def __init__(self, inputs, n_classes, **hparams):
        super().__init__(inputs, n_classes, **hparams)
        self.keys = list(self.inputs)
        self.branches = nn.ModuleDict()
        for key, spec in self.inputs.items():
            unimodal = HEADS[modality_of(key, spec)]
            sub_hparams = {k: v for k, v in self.hparams.items() if k in unimodal.defaults}
            self.branches[key] = unimodal({key: spec}, self.n_classes, **sub_hparams)
        # Zeros: start from the plain mean; only trained when combine="learned".
        self.combine_scores = nn.Parameter(torch.zeros(len(self.keys)), requires_grad=self.hparams["combine"] == "learned")

    def forward(self, batch: dict) -> torch.Tensor:
        n_clips = self.batch_size(batch)
        log_probs, present = [], []
        for key in self.keys:
            if key in batch:
                log_probs.append(torch.log_softmax(self.branches[key](batch), dim=-1))
                present.append(batch[key][1].any(dim=1))
            else:
                log_probs.append(self.combine_scores.new_zeros(n_clips, self.n_classes))
                present.append(torch.zeros(n_clips, dtype=torch.bool, device=self.combine_scores.device))
        log_probs = torch.stack(log_probs, dim=1)  # (B, M, C)
        present = torch.stack(present, dim=1)  # (B, M)
        # A clip with no modality at all falls back to every input rather than to NaN.
        present = present | ~present.any(dim=1, keepdim=True)
        scores = self.combine_scores.expand(n_clips, -1).masked_fill(~present, float("-inf"))
        log_weights = torch.log_softmax(scores, dim=1)  # renormalised over the present modalities
        return torch.logsumexp(log_weights.unsqueeze(-1) + log_probs, dim=1)
