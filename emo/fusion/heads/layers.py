"""Blocks shared by the heads: layer mix, masked pooling, positions, a sequence encoder.

Masks are (B, T) bool, True = real frame. Padded frames never influence a real one, so a
clip's logits do not depend on how much padding its batch adds.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LayerMix(nn.Module):
    """s3prl's Featurizer: a learned softmax-weighted sum over the cached hidden layers.

    (B, T, L, D) -> (B, T, D). With a single cached layer there is nothing to learn and
    the layer axis is squeezed.
    """

    def __init__(self, n_layers: int):
        super().__init__()
        self.n_layers = n_layers
        # Zeros: start from the plain average of the layers, as s3prl does.
        self.layer_logits = nn.Parameter(torch.zeros(n_layers)) if n_layers > 1 else None

    @property
    def weights(self) -> torch.Tensor:
        if self.layer_logits is None:
            return torch.ones(1)
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer_logits is None:
            return x[:, :, 0]
        return torch.einsum("btld,l->btd", x, self.weights.to(x.dtype))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real frames: (B, T, D), (B, T) -> (B, D); a clip with no frames gives zeros.

    masked_fill, not multiplication, so NaN/inf garbage in padding cannot leak (0 * inf = NaN).
    """
    total = x.masked_fill(~mask.unsqueeze(-1), 0.0).sum(dim=1)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
    return total / count


def zero_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero every padded frame of (B, T, ...) so garbage beyond the mask never enters a layer."""
    return x.masked_fill(~mask.reshape(*mask.shape, *([1] * (x.dim() - 2))), 0)


def attendable(mask: torch.Tensor) -> torch.Tensor:
    """The mask with the first slot opened in clips that have no real frame.

    Attention over an all-masked row is softmax over -inf everywhere: the inference fast
    path (and older torch in training) returns NaN there, which poisons anything that is
    not masked again downstream. The opened slot is still excluded from pooling, which
    uses the true mask.
    """
    empty = ~mask.any(dim=1, keepdim=True)
    first = torch.zeros_like(mask)
    first[:, :1] = True
    return mask | (empty & first)


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(length, dim) fixed sin/cos positions (Vaswani et al.); valid for any sequence length."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table.to(dtype)


class SequenceEncoder(nn.Module):
    """A pre-norm transformer encoder over (B, T, d) with a key padding mask.

    enable_nested_tensor=False: the nested-tensor fast path drops padded positions and
    changes numerics with the amount of padding; masking alone keeps outputs exact.
    """

    def __init__(self, d_model: int, heads: int, blocks: int, ffn: int, dropout: float):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model, heads, ffn, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, blocks, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, src_key_padding_mask=~attendable(mask))
