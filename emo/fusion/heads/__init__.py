"""Heads chosen by name: `build_head(name, inputs, n_classes, **hparams)`, `list_heads()`.

Importing this package registers every head (each module adds its heads to HEADS), in the
order `emo heads` lists them.
"""

from emo.fusion.heads.registry import HEADS, Head, InputSpec, Requires, build_head, list_heads, modality_of
from emo.fusion.heads import unimodal, early, late, cross_attention, concat_mlp, classical  # noqa: F401,E402  (registration)

__all__ = ["HEADS", "Head", "InputSpec", "Requires", "build_head", "list_heads", "modality_of"]
