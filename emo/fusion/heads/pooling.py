"""Time axis of the heads: temporal reduction before attention, and pooling over frames.

Masks are (B, T) bool, True = real frame. Both operations only ever combine real frames of one
clip, counted from its first frame, so a clip's result never depends on its batch's padding.

Reduction: non-overlapping windows of `window` frames are averaged (a masked mean per window),
the window chosen so that the modality's frame rate lands at or just above `target_rate`
(100 Hz descriptors -> 4 frames at 25 Hz, 50 Hz SSL frames -> 2). Attention costs grow with
the square of the length, and neighbouring 10-20 ms frames carry nearly the same content.
A clip shorter than the window becomes one frame (the mean of what it has); `emo fit` refuses
a target rate whose window is longer than the shortest clip, because that reduces every
clip to a single vector and was never what the user meant.

Pooling (clip vector from frames):
    mean       masked mean (width d)
    stats      masked mean and standard deviation, concatenated (x-vector statistics pooling, 2d)
    attentive  attentive statistics pooling as in ECAPA-TDNN (Desplanques et al. 2020): a
               channel-wise softmax attention over time, conditioned on the clip's global mean
               and std, gives a weighted mean and std (2d)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from emo.errors import EmoError
from emo.fusion.heads.layers import masked_mean
from emo.fusion.params import POOLINGS

# Variance floor: sqrt stays differentiable for constant features and one-frame clips.
VARIANCE_FLOOR = 1e-5


def reduction_window(rate: float | None, target_rate: float | None) -> int:
    """Frames averaged per step to bring `rate` (Hz) down to at most `target_rate` (1: unchanged).

    No known rate (text tokens, visual frames sampled per clip), no target (None or 0), or a rate
    already at or below the target: 1.
    """
    if target_rate is not None and (
        isinstance(target_rate, bool) or not isinstance(target_rate, (int, float))
        or not math.isfinite(target_rate) or target_rate < 0
    ):
        raise EmoError(f"target_rate must be a number of Hz > 0 (or none: keep the cached rate), got {target_rate!r}")
    if not rate or not target_rate or rate <= target_rate:
        return 1
    return max(1, math.ceil(rate / target_rate - 1e-9))


def reduce_time(x: torch.Tensor, mask: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, ...) frames -> (B, ceil(T / window), ...) window means; a window is real if any frame is.

    Padding comes out as zeros whatever it held (window 1 too): the front end before it leaves
    padded frames as they are, so this is the one place they are cleared.
    """
    B, T = mask.shape
    keep = mask.reshape(B, T, *([1] * (x.dim() - 2)))
    x = x.masked_fill(~keep, 0)  # masked_fill, not multiply: NaN in padding must not leak
    if window <= 1:
        return x, mask
    steps = -(-T // window)
    pad = steps * window - T
    if pad:
        x = torch.cat([x, x.new_zeros((B, pad, *x.shape[2:]))], dim=1)
        mask = torch.cat([mask, mask.new_zeros((B, pad))], dim=1)
    counts = mask.reshape(B, steps, window).sum(dim=2)
    sums = x.reshape(B, steps, window, *x.shape[2:]).sum(dim=2)
    scale = counts.clamp(min=1).to(x.dtype).reshape(B, steps, *([1] * (x.dim() - 2)))
    return sums / scale, counts > 0


def masked_mean_std(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over real frames, each (B, D)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean.unsqueeze(1)) ** 2, mask)
    return mean, var.clamp(min=VARIANCE_FLOOR).sqrt()


class MeanPooling(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(x, mask)


class StatsPooling(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = 2 * dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat(masked_mean_std(x, mask), dim=-1)


class AttentiveStatsPooling(nn.Module):
    """ECAPA-TDNN's channel- and context-dependent attentive statistics pooling.

    ECAPA uses 1x1 convolutions with BatchNorm; here Linear + tanh without BatchNorm, so a
    clip's vector never depends on the other clips of its batch.
    """

    def __init__(self, dim: int, bottleneck: int = 64):
        super().__init__()
        self.out_dim = 2 * dim
        self.attention = nn.Sequential(nn.Linear(3 * dim, bottleneck), nn.Tanh(), nn.Linear(bottleneck, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(-1)
        x = x.masked_fill(~keep, 0.0)
        mean, std = masked_mean_std(x, mask)
        context = torch.cat([x, mean.unsqueeze(1).expand_as(x), std.unsqueeze(1).expand_as(x)], dim=-1)
        # A large negative, not -inf: a clip without frames gets all-zero weights instead of NaN.
        scores = self.attention(context).masked_fill(~keep, -1e4)
        weights = torch.softmax(scores.float(), dim=1).to(x.dtype) * keep
        weighted_mean = (weights * x).sum(dim=1)
        var = (weights * x * x).sum(dim=1) - weighted_mean**2
        return torch.cat([weighted_mean, var.clamp(min=VARIANCE_FLOOR).sqrt()], dim=-1)


def build_pooling(kind: str, dim: int, owner: str = "head") -> nn.Module:
    if kind == "mean":
        return MeanPooling(dim)
    if kind == "stats":
        return StatsPooling(dim)
    if kind == "attentive":
        return AttentiveStatsPooling(dim)
    raise EmoError(f"{owner}: pooling must be one of {', '.join(POOLINGS)}, got {kind!r}")
