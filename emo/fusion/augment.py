"""Augmentation of cached features, training batches only: SpecAugment-style time and feature
masking, and mixup. Validation and test batches never pass through here, so scoring stays
deterministic.

    time masking     per clip, one span of up to `time_mask` x its length is hidden by the
                     mask (the heads then ignore those frames exactly as they ignore padding);
                     a clip always keeps at least one frame
    feature masking  per clip, one band of up to `feature_mask` x the width of every cached
                     layer is set to its training mean (zero once the head standardises it),
                     as SpecAugment masks frequency channels
    mixup            (Zhang et al. 2018) lam ~ Beta(a, a), kept >= 0.5 so each clip stays the
                     larger part of its mix; every clip is mixed with a random partner of the
                     batch where both have real frames, keeping its own mask; the loss is
                     lam CE(own label) + (1 - lam) CE(partner's label)

Masks and bands are drawn with the fold's numpy generator, so a seed fixes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # numpy and torch load with the trainer; FitOptions imports this module at CLI start
    import numpy as np


@dataclass(frozen=True)
class Augment:
    time_mask: float = 0.0
    feature_mask: float = 0.0
    mixup: float = 0.0

    @property
    def active(self) -> bool:
        return self.time_mask > 0 or self.feature_mask > 0 or self.mixup > 0


def spans(sizes: np.ndarray, fraction: float, rng: np.random.Generator, keep_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per row, a random span (start, width) of up to `fraction` x size (at most size - 1 when keep_one)."""
    import numpy as np

    widths = np.floor(rng.random(len(sizes)) * fraction * sizes).astype(np.int64)
    if keep_one:
        widths = np.minimum(widths, np.maximum(sizes - 1, 0))
    starts = np.floor(rng.random(len(sizes)) * (sizes - widths + 1)).astype(np.int64)
    return starts, widths


def mask_time(mask, fraction: float, rng: np.random.Generator):
    """The mask with one span of real frames per clip switched off (never a clip's last frame)."""
    import torch

    lengths = mask.sum(dim=1).cpu().numpy()
    starts, widths = spans(lengths, fraction, rng, keep_one=True)
    # Frames are real from position 0 to length - 1 (gathered batches), so spans index positions.
    position = torch.arange(mask.shape[1], device=mask.device)
    start = torch.from_numpy(starts).to(mask.device).unsqueeze(1)
    stop = start + torch.from_numpy(widths).to(mask.device).unsqueeze(1)
    return mask & ~((position >= start) & (position < stop))


def mask_features(x, fill, fraction: float, rng: np.random.Generator):
    """(B, T, L, D) features with one band of dims per clip set to `fill` (L, D), the training mean."""
    import numpy as np
    import torch

    B, D = x.shape[0], x.shape[-1]
    starts, widths = spans(np.full(B, D), fraction, rng, keep_one=False)
    dims = torch.arange(D, device=x.device)
    start = torch.from_numpy(starts).to(x.device).unsqueeze(1)
    band = (dims >= start) & (dims < start + torch.from_numpy(widths).to(x.device).unsqueeze(1))  # (B, D)
    return torch.where(band[:, None, None, :], fill.to(x.device, x.dtype)[None, None], x)


def augment_batch(batch: dict, augment: Augment, rng: np.random.Generator, fill: Mapping[str, "object"]) -> dict:
    """Time / feature masking of a training batch {key: (x, mask)}; `fill[key]` is a feature input's mean."""
    out = {}
    for key, (x, mask) in batch.items():
        if augment.time_mask > 0:
            mask = mask_time(mask, augment.time_mask, rng)
        if augment.feature_mask > 0 and key in fill and x.is_floating_point():
            x = mask_features(x, fill[key], augment.feature_mask, rng)
        out[key] = (x, mask)
    return out


def mix_batch(batch: dict, alpha: float, rng: np.random.Generator):
    """(mixed batch, partner index (B,), lam): every clip mixed with a random partner."""
    import torch

    lam = float(rng.beta(alpha, alpha))
    lam = max(lam, 1.0 - lam)
    n = next(iter(batch.values()))[1].shape[0]
    partner = torch.from_numpy(rng.permutation(n))
    out = {}
    for key, (x, mask) in batch.items():
        p = partner.to(x.device)
        both = (mask & mask[p]).reshape(*mask.shape, *([1] * (x.dim() - 2)))
        mixed = torch.lerp(x[p].float(), x.float(), lam)  # lam * x + (1 - lam) * x[p], one pass
        if not x.is_floating_point():  # uint8 face crops stay uint8
            mixed = mixed.round().clamp(0, 255)
        out[key] = (torch.where(both, mixed.to(x.dtype), x), mask)
    return out, partner, lam
