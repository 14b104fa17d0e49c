"""Per-input front ends: raw batch tensors -> frame vectors (B, T, width), padding zeroed.

features (B, T, L, D) float -> layer mix -> (B, T, D)
faces    (B, T, S, S, 3) uint8 -> patch encoder -> (B, T, face_dim)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emo.errors import EmoError
from emo.fusion.heads.face_encoder import FaceEncoder
from emo.fusion.heads.layers import LayerMix, sinusoidal_positions
from emo.fusion.heads.pooling import reduce_time, reduction_window
from emo.fusion.heads.registry import InputSpec

# Hyperparameters of the face patch encoder, shared by every head that can take crops.
FACE_DEFAULTS: dict[str, Any] = {
    # 48 px, the resolution of FER-2013, keeps brow and mouth shape and trains on a CPU; larger
    # crops are downsized to this before patching (None: keep the cached size).
    "face_size": 48,
    "face_patch": 8,  # a 6 x 6 token grid at 48 px (the conv stem halves the image 3 times)
    "face_dim": 64,
    "face_layers": 2,
    "face_heads": 2,
    "face_pool": "mean",
    "face_flip": True,  # training only
    # Pixels of random shift per clip, training only. 0: the crops are already aligned on five
    # landmarks, and on the demo faces even 2 px (at 48 px) kept the encoder at chance for 30 epochs.
    "face_jitter": 0,
}


class FeatureFrontEnd(nn.Module):
    """Cached features (B, T, L, D) -> standardised -> layers combined -> (B, T, width).

    layer_mix "weighted": a learned softmax-weighted sum (width D), the SUPERB convention;
    "concat": the L layers side by side (width L * D), so the projection that follows can
    weigh every dimension of every layer, as a linear probe on concatenated layers does.
    """

    def __init__(self, key: str, row_shape: tuple, layer_mix: str = "weighted"):
        super().__init__()
        self.key = key
        self.row_shape = tuple(row_shape)
        self.concat = layer_mix == "concat"
        self.mix = None if self.concat else LayerMix(self.row_shape[0])
        self.out_dim = self.row_shape[0] * self.row_shape[1] if self.concat else self.row_shape[1]
        # Per layer and dimension standardisation, set from the training frames before training
        # (`Head.set_feature_stats`). Classical descriptors mix scales (F0 in semitones, formants in
        # Hz, loudness in sones) that would otherwise swamp each other. Buffers, so checkpoints keep them.
        self.register_buffer("shift", torch.zeros(self.row_shape))
        self.register_buffer("scale", torch.ones(self.row_shape))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[2:]) != self.row_shape:
            raise EmoError(
                f"{self.key}: expected features (B, T, {self.row_shape[0]}, {self.row_shape[1]}), "
                f"got {tuple(x.shape)}; was the head trained on another cache or layer selection?"
            )
        # Padded frames are left as they come (possibly NaN): reduce_time, which always follows
        # (ProjectedSequence), zeroes them; masking here too cost a full pass over every batch.
        x = (x.float() - self.shift) / self.scale
        return x.flatten(2) if self.concat else self.mix(x)


class FaceFrontEnd(nn.Module):
    def __init__(self, key: str, row_shape: tuple, hp: dict, dropout: float):
        super().__init__()
        self.key = key
        self.encoder = FaceEncoder(
            crop_size=row_shape[0],
            image_size=hp["face_size"],
            patch=hp["face_patch"],
            dim=hp["face_dim"],
            layers=hp["face_layers"],
            heads=hp["face_heads"],
            pool=hp["face_pool"],
            dropout=dropout,
            flip=hp["face_flip"],
            jitter=hp["face_jitter"],
        )
        self.out_dim = self.encoder.out_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, mask)


def build_frontend(key: str, spec: InputSpec, hp: dict) -> nn.Module:
    if spec.kind == "faces":
        return FaceFrontEnd(key, spec.row_shape, hp, hp.get("dropout", 0.0))
    return FeatureFrontEnd(key, spec.row_shape, hp.get("layer_mix", "weighted"))


def check_mask(key: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if mask.dtype != torch.bool or mask.dim() != 2 or tuple(mask.shape) != tuple(x.shape[:2]):
        raise EmoError(
            f"{key}: mask must be bool (B, T) matching x {tuple(x.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}"
        )
    return mask


class ProjectedSequence(nn.Module):
    """One input as a d_model sequence: front end -> temporal reduction -> linear -> + time positions.

    The reduction (see pooling.py) averages windows of `window` frames, derived from the
    input's frame rate and the head's `target_rate`; it runs at the front end's width, before
    the projection, where it is cheapest. Returns the sequence and its (reduced) mask.
    """

    def __init__(self, key: str, spec: InputSpec, d_model: int, hp: dict):
        super().__init__()
        self.key = key
        self.frontend = build_frontend(key, spec, hp)
        self.window = reduction_window(spec.rate, hp.get("target_rate"))
        self.proj = nn.Linear(self.frontend.out_dim, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_mask(self.key, x, mask)
        frames, mask = reduce_time(self.frontend(x, mask), mask, self.window)
        h = self.proj(frames)
        return h + sinusoidal_positions(h.shape[1], h.shape[2], device=h.device, dtype=h.dtype), mask


class FusionInputs(nn.Module):
    """Every input of a fusion head as a d_model sequence plus one learned "missing" slot.

    The slot is real (mask True) only for a clip that has no frame of that modality, or for
    every clip when the modality is absent from the batch (modality dropout, `emo eval
    --drop`): the encoder then sees a learned token instead of nothing, and no attention
    row is ever fully masked.
    """

    def __init__(self, inputs: dict[str, InputSpec], d_model: int, hp: dict):
        super().__init__()
        self.keys = list(inputs)
        self.branches = nn.ModuleDict({key: ProjectedSequence(key, spec, d_model, hp) for key, spec in inputs.items()})
        self.missing = nn.Parameter(torch.randn(len(self.keys), d_model) * 0.02)

    def forward(self, batch: dict, n_clips: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for i, key in enumerate(self.keys):
            slot = self.missing[i].expand(n_clips, 1, -1)
            if key in batch:
                x, mask = batch[key]
                frames, mask = self.branches[key](x, mask)
                seq = torch.cat([frames, slot], dim=1)
                mask = torch.cat([mask, ~mask.any(dim=1, keepdim=True)], dim=1)
            else:
                seq = slot
                mask = torch.ones(n_clips, 1, dtype=torch.bool, device=slot.device)
            out[key] = (seq, mask)
        return out
