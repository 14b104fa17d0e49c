"""A small ViT-style patch encoder for raw uint8 face crops, trained with the head.

(B, T, S, S, 3) uint8 -> (B, T, dim): each real frame's patches -> a frame vector (CLS or
mean of patch tokens). Only the frames inside the mask are encoded (padding costs nothing
and cannot change a clip's output). Crops are resized to `image_size` first so 224-px
caches train on a CPU.
Pixels are scaled to [-1, 1] inside, so the cache keeps compact uint8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emo.errors import EmoError

# Maps [0, 1] to [-1, 1]: trained from scratch, so per-dataset ImageNet statistics buy nothing.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.5


class FaceEncoder(nn.Module):
    def __init__(
        self,
        crop_size: int,
        image_size: int | None = 112,
        patch: int = 16,
        dim: int = 192,
        layers: int = 4,
        heads: int = 3,
        pool: str = "cls",
        dropout: float = 0.0,
        flip: bool = True,
        jitter: int = 4,
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
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
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
        """(N, 3, H, W) float in [-1, 1] -> (N, dim)."""
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
        images = (images - PIXEL_MEAN) / PIXEL_STD
        return out.masked_scatter(mask.unsqueeze(-1), self.encode_frames(images))
