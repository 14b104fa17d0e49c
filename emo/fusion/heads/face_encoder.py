"""A small ViT-style patch encoder for raw uint8 face crops, trained with the head.

(B, T, S, S, 3) uint8 -> (B, T, dim): each real frame's patches -> a frame vector (CLS or
mean of patch tokens). Only the frames inside the mask are encoded (padding costs nothing
and cannot change a clip's output). Crops are resized to `image_size` first so 224-px
caches train on a CPU, then standardised per crop and channel.

Patches are embedded by a small convolutional stem instead of the plain ViT linear
projection: 3x3 stride-2 conv-BN-GELU blocks, as in Xiao et al. 2021 ("Early convolutions
help transformers see better"); convolutional tokenisers are also how the compact
transformers of Hassani et al. 2021 train ViTs from scratch on small data. Why, measured on
the drawn demo faces (visual head, speaker split, 30 epochs at lr 1e-3, seeds 0-2): the
linear-projection ViT on [-1, 1] pixels stayed at chance (train loss ~ln 4); per-crop
standardisation alone let it learn on 2 of 3 splits, late; a BatchNorm stem learns on all
three within ~10 epochs (a GroupNorm stem mostly stayed at chance). Expressions there are a
few pixels of brow tilt and mouth curve in crops whose variance is nearly all speaker colour
and talking mouth; batch-standardised local features make those deviations unit-scale from
the first step, where per-image norms leave the shared face dominating every token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emo.errors import EmoError


def conv_stem(dim: int, patch: int) -> nn.Sequential:
    """Image (N, 3, H, W) -> (N, dim, H / patch, W / patch).

    One 3x3 stride-2 conv-BN-GELU per factor 2 of `patch` (channels doubling up to `dim`),
    then a conv whose kernel = stride = what is left of the patch (1x1 for powers of two),
    as in Xiao et al.'s stem. An odd patch size leaves the plain linear patch projection.
    """
    halvings, rest = 0, patch
    while rest % 2 == 0:
        halvings, rest = halvings + 1, rest // 2
    layers: list[nn.Module] = []
    channels = 3
    for i in range(halvings):
        out = max(8, dim >> (halvings - 1 - i))
        # BatchNorm in eval uses its running statistics, so a clip's output never depends on
        # the other clips of its batch or on padding (padded frames are never encoded anyway).
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.GELU()]
        channels = out
    layers.append(nn.Conv2d(channels, dim, rest, stride=rest))
    return nn.Sequential(*layers)


class FaceEncoder(nn.Module):
    def __init__(
        self,
        crop_size: int,
        image_size: int | None = 48,
        patch: int = 8,
        dim: int = 64,
        layers: int = 2,
        heads: int = 2,
        pool: str = "mean",
        dropout: float = 0.0,
        flip: bool = True,
        jitter: int = 0,
    ):
        super().__init__()
        # Never upsample: larger crops are downsized to image_size, smaller ones kept as cached.
        self.image_size = min(int(image_size or crop_size), crop_size)
        if self.image_size % patch:
            raise EmoError(f"faces: image size {self.image_size} is not a multiple of the patch size {patch}")
        if pool not in ("cls", "mean"):
            raise EmoError(f"faces: pool must be 'cls' or 'mean', got {pool!r}")
        if dim % heads:
            raise EmoError(f"faces: dim {dim} is not divisible by heads {heads}")
        self.crop_size = crop_size
        self.pool = pool
        self.flip = flip
        self.jitter = int(jitter)
        self.out_dim = dim
        n_patches = (self.image_size // patch) ** 2
        self.patch_embed = conv_stem(dim, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + n_patches, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)

    def augment(self, images: torch.Tensor, clip_of_frame: torch.Tensor, n_clips: int) -> torch.Tensor:
        """Training-only: one horizontal flip and one small shift per clip (all its frames alike,
        so the motion between frames is not disturbed)."""
        device = images.device
        if self.flip:
            flip = (torch.rand(n_clips, device=device) < 0.5)[clip_of_frame]
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        if self.jitter > 0:
            j, size = self.jitter, images.shape[-1]
            # Pad by replicating the border, then crop the original size at a per-clip offset.
            padded = F.pad(images, (j, j, j, j), mode="replicate")
            offsets = torch.randint(0, 2 * j + 1, (n_clips, 2), device=device)[clip_of_frame]
            grid = torch.arange(size, device=device)
            rows = (offsets[:, 0:1] + grid)[:, :, None]  # (N, S, 1)
            cols = (offsets[:, 1:2] + grid)[:, None, :]  # (N, 1, S)
            frame = torch.arange(images.shape[0], device=device)[:, None, None]
            images = padded.permute(0, 2, 3, 1)[frame, rows, cols].permute(0, 3, 1, 2)
        return images

    def encode_frames(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) standardised pixels -> (N, dim)."""
        tokens = self.patch_embed(images).flatten(2).transpose(1, 2)  # (N, P, dim)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos
        tokens = self.encoder(tokens)
        return tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or tuple(x.shape[2:]) != (self.crop_size, self.crop_size, 3):
            raise EmoError(
                f"faces: expected (B, T, {self.crop_size}, {self.crop_size}, 3) crops, got {tuple(x.shape)}"
            )
        B, T = mask.shape
        out = torch.zeros(B, T, self.out_dim, device=x.device, dtype=self.pos.dtype)
        if not bool(mask.any()):
            return out
        clip_of_frame = torch.arange(B, device=x.device)[:, None].expand(B, T)[mask]
        images = x[mask].permute(0, 3, 1, 2).to(self.pos.dtype) / 255.0  # (N, 3, S, S)
        if self.image_size != self.crop_size:
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False
            )
        if self.training:
            images = self.augment(images, clip_of_frame, B)
        return out.masked_scatter(mask.unsqueeze(-1), self.encode_frames(standardise(images)))


def standardise(images: torch.Tensor) -> torch.Tensor:
    """Each crop's channels to zero mean and unit variance over its pixels ("normalised faces").

    Per image and channel, not per dataset: skin tone, background, lighting and white balance
    differ between speakers far more than expressions do, and an encoder trained from scratch
    on a few speakers latches on to them. On the demo faces this alone took the plain ViT from
    chance to learning; per channel beat one statistic over all channels by a few points of UAR.
    The floor keeps a flat crop (a filled frame) finite.
    """
    mean = images.mean(dim=(2, 3), keepdim=True)
    std = images.std(dim=(2, 3), keepdim=True)
    return (images - mean) / std.clamp(min=1e-2)
