"""The extract stage's public entry point: `run_extraction`, in one process or under torchrun.

It checks what can be checked before any dataset scan or model load, then dispatches: one
process runs `emo.extract.run.local.run_single_process`; under torchrun (WORLD_SIZE > 1) each
process runs `emo.extract.run.distributed.run_distributed_extraction` on its shard. Both take the
same `ExtractionRequest`, so the options are spelled out once, here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from emo.errors import EmoError
from emo.extract.run.distributed import distributed_context, run_distributed_extraction
from emo.extract.options import ExtractOptions
from emo.extract.run.local import ExtractionRequest, ExtractionSummary, run_single_process

if TYPE_CHECKING:
    from rich.console import Console


def run_extraction(
    dataset: str,
    root: str | Path,
    cache_path: str | Path,
    modalities: Sequence[str] | None = None,
    options: ExtractOptions | None = None,
    *,
    shard: tuple[int, int] | None = None,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    console: "Console | None" = None,
    dataset_options: Mapping[str, Any] | None = None,
) -> ExtractionSummary:
    """Extract `modalities` (default: what the dataset has) of dataset `dataset` at `root` into `cache_path`.

    retry_failed: clips recorded as failed are extracted again (after the files were fixed).
    Under torchrun every process extracts its own shard and rank 0 merges (emo.extract.run.distributed).
    """
    return extract(ExtractionRequest(
        dataset, root, cache_path, modalities, options or ExtractOptions(), shard=shard, force=force,
        retry_failed=retry_failed, progress=progress, console=console, dataset_options=dataset_options,
    ))


def extract(request: ExtractionRequest) -> ExtractionSummary:
    """`run_extraction` for a request already assembled."""
    from emo.cache.h5file import check_cache_path
    from emo.cache.lock import check_unlocked

    check_cache_path(request.cache_path)  # before any dataset scan or model load
    check_unlocked(request.cache_path)
    context = distributed_context()
    if context is None:
        return run_single_process(request)
    if request.shard is not None:
        raise EmoError("--shard and torchrun both split the clips: under torchrun each process takes its own shard")
    return run_distributed_extraction(context, request)
