"""Read the tensors of a CTranslate2 `model.bin` (the format faster-whisper's conversions ship in).

The layout is the one ctranslate2's own serialiser writes (python/ctranslate2/specs/model_spec.py,
binary version 6), all little-endian:
    u32 version, string spec name, u32 spec revision,
    u32 variable count, then per variable: string name, u8 rank, u32 dims[rank],
        u8 dtype id, u32 byte count, raw bytes,
    u32 alias count, then per alias: string alias, string name it stands for.
A string is a u16 length (counting a trailing NUL), the UTF-8 bytes and the NUL.
Aliases are how the serialiser stores a tensor equal to another one only once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from emo.errors import BackboneError

# Order of ctranslate2's DataType enum (include/ctranslate2/types.h).
DTYPE_NAMES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
SUPPORTED_VERSIONS = (5, 6)


@dataclass
class CT2Model:
    spec: str  # e.g. "WhisperSpec"
    revision: int
    tensors: dict  # name -> torch.Tensor (CPU, the stored dtype); aliases resolved


def read_ct2_model(data: bytes | memoryview, source: str | Path) -> CT2Model:
    """Parse the bytes of a model.bin; BackboneError naming `source` when they are not one."""
    import torch

    view = memoryview(data)
    offset = 0

    def take(fmt: str):
        nonlocal offset
        size = struct.calcsize(fmt)
        if offset + size > len(view):
            raise BackboneError(f"{source}: CTranslate2 model file ends early (truncated at byte {offset})")
        value = struct.unpack_from(fmt, view, offset)[0]
        offset += size
        return value

    def string() -> str:
        nonlocal offset
        length = take("<H")
        if length < 1 or offset + length > len(view):
            raise BackboneError(f"{source}: CTranslate2 model file ends early (truncated at byte {offset})")
        text = bytes(view[offset : offset + length - 1]).decode("utf-8", errors="replace")
        offset += length
        return text

    version = take("<I")
    if version not in SUPPORTED_VERSIONS:
        raise BackboneError(f"{source}: not a CTranslate2 model file this reader knows (binary version {version})")
    spec, revision = string(), take("<I")
    tensors = {}
    for _ in range(take("<I")):
        name = string()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype_id, size = take("<B"), take("<I")
        if dtype_id >= len(DTYPE_NAMES):
            raise BackboneError(f"{source}: tensor {name} has an unknown dtype id {dtype_id}")
        if offset + size > len(view):
            raise BackboneError(f"{source}: CTranslate2 model file ends early (inside tensor {name})")
        dtype = getattr(torch, DTYPE_NAMES[dtype_id])
        raw = view[offset : offset + size]
        offset += size
        tensor = torch.frombuffer(bytearray(raw), dtype=dtype) if size else torch.empty(0, dtype=dtype)
        tensors[name] = tensor.reshape(shape)
    for _ in range(take("<I")):
        alias, target = string(), string()
        if target not in tensors:
            raise BackboneError(f"{source}: alias {alias} names a tensor {target} that the file does not hold")
        tensors[alias] = tensors[target]
    return CT2Model(spec=spec, revision=revision, tensors=tensors)
