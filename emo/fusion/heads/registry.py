"""The head registry: heads chosen by name (timm's `@register_model`), listable, and
checkpoints that describe themselves (`head.config` -> `Head.from_config`).

A head maps a batch `{input key: (x, mask)}` to logits `(B, n_classes)`. Input keys are
the cache's modality groups (`audio`, `text`, `visual`, `faces`); `faces` (uint8 crops)
is the visual modality seen as pixels instead of encoder features.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from emo.errors import EmoError
from emo.fusion.params import Param, check_values

MODALITIES = ("audio", "text", "visual")
KINDS = ("features", "faces")
# A head larger than this (parameters + buffers) is refused before it is built: ~1 GB of float32
# weights, ~4 GB with AdamW's moments and the gradients, far beyond any head these caches need
# (the paper-sized cross_attention head is ~10 M). It bounds what a crafted run record can allocate.
MAX_HEAD_VALUES = 250_000_000
MAX_CLASSES = 10_000


@dataclass(frozen=True)
class InputSpec:
    """One input of a head: its cache group `name`, its `kind` and the shape of one frame.

    features: row_shape (L, D) = cached hidden layers x width (the layer axis is always there).
    faces:    row_shape (S, S, 3) = square uint8 RGB crops.
    rate:     frames per second of the cached sequence when it is fixed (from the fingerprint:
              100 for openSMILE / log-mel, 50 for wav2vec2-style encoders, the sampling fps of
              faces), None when it is not (text tokens, a fixed number of frames per clip).
              The heads derive their temporal reduction from it.
    """

    name: str
    kind: str
    row_shape: tuple
    rate: float | None = None

    def __post_init__(self) -> None:
        # JSON round-trips turn tuples into lists; keep specs hashable and comparable.
        shape = self.row_shape
        if not isinstance(shape, (list, tuple)) or not all(
            isinstance(n, int) and not isinstance(n, bool) for n in shape
        ):
            raise EmoError(f"input {self.name!r}: row_shape must be a list of integers, got {shape!r}")
        object.__setattr__(self, "row_shape", tuple(int(n) for n in shape))
        if self.rate is not None:
            rate = self.rate
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
                raise EmoError(f"input {self.name!r}: frame rate must be a positive number of Hz, got {self.rate!r}")
            object.__setattr__(self, "rate", float(rate))
        shape = self.row_shape
        if self.kind == "features":
            if len(shape) != 2 or min(shape) < 1:
                raise EmoError(f"input {self.name!r}: features need row_shape (layers, width), got {shape}")
        elif self.kind == "faces":
            if len(shape) != 3 or shape[2] != 3 or shape[0] != shape[1] or shape[0] < 1:
                raise EmoError(f"input {self.name!r}: faces need row_shape (S, S, 3), got {shape}")
        else:
            raise EmoError(f"input {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "row_shape": list(self.row_shape), "rate": self.rate}

    @classmethod
    def coerce(cls, spec: "InputSpec | dict") -> "InputSpec":
        if isinstance(spec, InputSpec):
            return spec
        # rate is optional: runs saved before frame rates were recorded have none (no reduction).
        if not isinstance(spec, dict) or not {"name", "kind", "row_shape"} <= set(spec) <= {"name", "kind", "row_shape", "rate"}:
            raise EmoError(f"input spec must be {{name, kind, row_shape[, rate]}}, got {spec!r}"[:200])
        return cls(**spec)


def frame_rate(fingerprint: dict) -> float | None:
    """A modality's fixed frame rate (Hz) from its cache fingerprint, None when it has none.

    Audio extractors record `frame_rate` (100 for openSMILE / log-mel, 50 for wav2vec2 and
    Whisper); face crops record the sampling `fps`, visual embeddings carry the face pipeline's
    fingerprint under "faces". Text tokens and faces sampled as a fixed number of frames per clip
    have no rate: their sequences are never reduced.
    """
    for source in (fingerprint, fingerprint.get("faces")):
        if not isinstance(source, dict):
            continue
        for key in ("frame_rate", "fps"):
            value = source.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
                return float(value)
    return None


def modality_of(key: str, spec: InputSpec) -> str:
    """The modality (audio / text / visual) an input carries; face crops are visual."""
    base = key if key in MODALITIES or key == "faces" else spec.name
    if spec.kind == "faces":
        if base not in ("visual", "faces"):
            raise EmoError(f"input {key!r}: face crops can only feed the visual modality")
        return "visual"
    if base not in MODALITIES:
        raise EmoError(
            f"input {key!r}: unknown modality {base!r}; expected one of {', '.join(MODALITIES)} (or faces)"
        )
    return base


@dataclass(frozen=True)
class Requires:
    """Which modalities a head accepts: `lo`..`hi` distinct ones out of `allowed`."""

    allowed: tuple[str, ...]
    lo: int
    hi: int
    faces_ok: bool = False

    def __str__(self) -> str:
        if len(self.allowed) == 1:
            (only,) = self.allowed
            return f"{only} (features or faces)" if only == "visual" and self.faces_ok else only
        names = ", ".join(self.allowed)
        if self.lo == self.hi:
            return f"exactly {self.lo} of {names}"
        if self.hi >= len(self.allowed):
            return f">= {self.lo} of {names}" + (" (visual: features or faces)" if self.faces_ok else "")
        return f"{self.lo}-{self.hi} of {names}"

    def check(self, head: str, inputs: dict[str, InputSpec]) -> None:
        if not inputs:
            raise EmoError(f"head {head!r} needs {self}; no inputs given")
        modalities = [modality_of(key, spec) for key, spec in inputs.items()]
        given = ", ".join(f"{k} ({s.kind})" for k, s in inputs.items())
        seen = set()
        for modality in modalities:
            if modality in seen:
                raise EmoError(f"head {head!r}: the {modality} modality is given twice ({given}); pick one")
            seen.add(modality)
        wrong = [m for m in modalities if m not in self.allowed]
        if wrong or not self.lo <= len(modalities) <= self.hi:
            raise EmoError(f"head {head!r} needs {self}; got {given}")
        if not self.faces_ok and any(s.kind == "faces" for s in inputs.values()):
            raise EmoError(f"head {head!r} does not take face crops; got {given}")


class Head(nn.Module):
    """Base of every head. Subclasses set name, description, requires, defaults, params (and rules).

    `params` declares every key of `defaults` (type and range, emo.fusion.params.Param);
    `rules` are checks between values (e.g. Divisible("d_model", "heads")).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    requires: ClassVar[Requires]
    defaults: ClassVar[dict[str, Any]]
    params: ClassVar[dict[str, Param]] = {}
    rules: ClassVar[tuple] = ()
    # The head's own learning rate / batch size when the user gives none (emo.fusion.options.FALLBACKS otherwise).
    fit_defaults: ClassVar[dict[str, Any]] = {}
    # True when a modality may be missing from a batch (modality dropout, `emo eval --drop`).
    absent_ok: ClassVar[bool] = False

    def __init__(self, inputs: dict[str, InputSpec | dict], n_classes: int, **hparams: Any):
        super().__init__()
        if not isinstance(inputs, dict):
            raise EmoError(f"head {self.name!r}: inputs must be a mapping of input specs, got {type(inputs).__name__}")
        inputs = {key: InputSpec.coerce(spec) for key, spec in inputs.items()}
        self.requires.check(self.name, inputs)
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or not 2 <= n_classes <= MAX_CLASSES:
            raise EmoError(f"head {self.name!r}: n_classes must be an integer in [2, {MAX_CLASSES}], got {n_classes!r}")
        self.inputs = inputs
        self.n_classes = int(n_classes)
        # Every value is stored, not only overrides, so a checkpoint keeps its architecture
        # even if a default changes later.
        self.hparams = check_hparams(self.name, hparams, type(self))

    @property
    def config(self) -> dict:
        return {
            "name": self.name,
            "inputs": {key: spec.to_dict() for key, spec in self.inputs.items()},
            "n_classes": self.n_classes,
            "hparams": dict(self.hparams),
        }

    def set_feature_stats(self, stats: dict) -> None:
        """Standardise each feature input by its training statistics: {key: (mean (L, D), std (L, D))}."""
        import torch

        from emo.fusion.heads.branches import FeatureFrontEnd

        for module in self.modules():
            if isinstance(module, FeatureFrontEnd) and module.key in stats:
                mean, std = (torch.as_tensor(v, dtype=torch.float32) for v in stats[module.key])
                module.shift.copy_(mean.reshape(module.row_shape))
                # A constant dimension must not become inf; 1e-3 keeps its zero-mean value at zero.
                module.scale.copy_(std.reshape(module.row_shape).clamp(min=1e-3))

    @staticmethod
    def from_config(config: dict) -> "Head":
        return build_head(config["name"], config["inputs"], config["n_classes"], **config.get("hparams", {}))

    def reduction_windows(self) -> dict[str, int]:
        """Frames averaged per attention step, per input (only inputs that are reduced)."""
        windows = {}
        for module in self.modules():
            window = getattr(module, "window", 1)
            if isinstance(window, int) and window > 1:
                windows[module.key] = window
        return windows

    def layer_weights(self) -> dict[str, list[float]]:
        """The learned layer-mix weights per input with more than one cached layer (for reports)."""
        weights = {}
        for module in self.modules():
            mix = getattr(module, "mix", None)
            if mix is not None and getattr(mix, "layer_logits", None) is not None:
                weights[module.key] = mix.weights.detach().cpu().tolist()
        return weights

    def batch_size(self, batch: dict) -> int:
        present = [key for key in self.inputs if key in batch]
        if not present:
            raise EmoError(f"head {self.name!r}: the batch holds none of its inputs ({', '.join(self.inputs)})")
        return batch[present[0]][1].shape[0]


HEADS: dict[str, type[Head]] = {}


def register_head(cls: type[Head]) -> type[Head]:
    if cls.name in HEADS:
        raise ValueError(f"head {cls.name!r} registered twice")
    undeclared = sorted(set(cls.defaults) - set(cls.params))
    if undeclared:  # a programming error: every hyperparameter is validated, so each must be declared
        raise TypeError(f"head {cls.name!r}: declare {', '.join(undeclared)} in its `params` (type and range)")
    check_values(cls.name, cls.params, cls.rules, cls.defaults)  # the defaults must pass their own checks
    HEADS[cls.name] = cls
    return cls


def head_class(name: str) -> type[Head]:
    if not isinstance(name, str) or name not in HEADS:
        raise EmoError(f"unknown head {name!r}; available: {', '.join(HEADS)}")
    return HEADS[name]


def check_hparams(name: str, hparams: dict[str, Any], cls: type[Head] | None = None) -> dict[str, Any]:
    """Every hyperparameter of head `name` (defaults overlaid with `hparams`), each checked against its
    declaration: EmoError naming the head, the value and the accepted range. The one validation of
    `--set`, `sweep --grid`, the Python API and saved run records."""
    cls = cls or head_class(name)
    if not isinstance(hparams, dict):
        raise EmoError(f"head {name!r}: hyperparameters must be a mapping, got {type(hparams).__name__}")
    unknown = sorted(set(hparams) - set(cls.defaults))
    if unknown:
        raise EmoError(
            f"head {name!r}: unknown hyperparameter(s) {', '.join(map(str, unknown))}; "
            f"accepted: {', '.join(sorted(cls.defaults))}"
        )
    return check_values(name, cls.params, cls.rules, {**cls.defaults, **hparams})


def build_head(name: str, inputs: dict[str, InputSpec | dict], n_classes: int, **hparams: Any) -> Head:
    """A fresh head `name` for these inputs; EmoError when the name, inputs, hparams or size do not fit.

    The head is first built on torch's meta device (shapes only, no memory) and its size checked,
    so an oversized request is refused before a byte is allocated.
    """
    import torch

    cls = head_class(name)
    with torch.device("meta"):
        probe = cls(inputs, n_classes, **hparams)
    size = sum(t.numel() for t in itertools.chain(probe.parameters(), probe.buffers()))
    if size > MAX_HEAD_VALUES:
        raise EmoError(
            f"head {name!r}: {size / 1e6:.0f} M parameters exceeds the limit of {MAX_HEAD_VALUES / 1e6:.0f} M "
            f"(inputs {', '.join(f'{k} {tuple(s.row_shape)}' for k, s in probe.inputs.items())}; "
            f"hyperparameters {probe.hparams}); choose a smaller width, depth or fewer cached layers"[:600]
        )
    return cls(inputs, n_classes, **hparams)


def list_heads() -> list[tuple[str, str, str]]:
    """(name, description, modality requirement) for every registered head, in registry order."""
    return [(cls.name, cls.description, str(cls.requires)) for cls in HEADS.values()]
