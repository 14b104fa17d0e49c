"""Where and at what precision torch computes: one rule each for the encoders (`emo extract`,
`emo predict`) and the fusion trainer (`emo fit`, `emo eval`), so a machine gets the same choice
wherever it runs.

Device (`resolve_device`): None, "" or "auto" is cuda when available, else cpu; anything else
must be a torch device this machine has, or it is a one-line EmoError.

Precision (`choose_precision`):
- CPU (and anything not CUDA): float32, no autocast. CPU half precision is slow and lossy.
- CUDA with native bfloat16 (compute capability 8.0+, Ampere and later; ROCm): bfloat16, which
  has float32's range, so training needs no loss scaling.
- Older CUDA cards (GTX 10xx, T4, V100...): float16. Its range is small, so small gradients
  underflow to zero: training scales the loss with a GradScaler.
torch.cuda.is_bf16_supported() is not the test: it also answers True where bfloat16 is only
emulated (a cc 7.5 T4), which runs far slower than float16.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class Precision:
    dtype: Any  # the torch autocast dtype; None: float32 throughout, no autocast
    grad_scaler: bool  # training must scale the loss (float16 gradients underflow)


def resolve_device(device=None):
    """The torch.device for a --device value (see the module doc); EmoError naming the fix."""
    import torch

    from emo.errors import EmoError

    if device is None or (isinstance(device, str) and device.strip().lower() in ("", "auto")):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError):
        raise EmoError(f"--device {device!r}: not a torch device (cpu, cuda, cuda:1, auto)") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise EmoError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise EmoError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    return resolved


def native_bf16(device) -> bool:
    """Whether `device` computes bfloat16 natively (not emulated)."""
    import torch

    if device.type != "cuda":
        return False
    if torch.version.hip:  # every ROCm GPU torch supports has bfloat16
        return True
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index)[0] >= 8


def choose_precision(device, precision: str = "auto", where: str = "") -> Precision:
    """The compute dtype on `device` for `precision` (auto, fp32, fp16, bf16); see the module doc.

    An explicit fp16 or bf16 is honoured on CUDA (bf16 on an old card is emulated: slow, but
    asked for); on the CPU every option is float32. `where` prefixes the error (a backbone name).
    """
    import torch

    from emo.errors import EmoError

    if precision not in PRECISIONS:
        prefix = f"{where}: " if where else ""
        raise EmoError(f"{prefix}precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp32" or device.type != "cuda":
        return Precision(None, False)
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return Precision(torch.bfloat16, False)
    return Precision(torch.float16, True)


def autocast(device, dtype):
    """torch.autocast at `dtype` on `device`, or nothing when dtype is None (float32)."""
    import torch

    return nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)
