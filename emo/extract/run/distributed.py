"""`emo extract` under torchrun: each process extracts one shard, rank 0 merges them into the cache.

    torchrun --standalone --nproc-per-node 4 -m emo extract kor-emotion DATA -o kor.h5 [options]
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m emo extract kor-emotion DATA -o /shared/kor.h5 [options]

(`torchrun ... $(which emo) extract ...` works too.) What happens, with RANK, WORLD_SIZE and
LOCAL_RANK from torchrun:
1. Every rank scans the dataset, takes shard RANK/WORLD_SIZE of the clips (`shard_clips`) and
   loads its extractors on cuda:LOCAL_RANK (or the CPU). If any rank fails here, every rank stops
   with that rank's reason: none is left waiting for the others.
2. If the cache already exists, rank 0 brings it up to date first (new clips appended,
   fingerprints compared: kept or rebuilt, --force, --retry-failed), and then every rank skips
   the clips the cache has already settled (ok, missing or failed) for each modality.
3. Each rank writes its own shard cache beside the target: the target's name with
   `.rank{R}of{N}` before the suffix (kor.h5 -> kor.rank0of4.h5). It is an ordinary resumable
   cache, so a killed run restarted with the same number of processes continues each shard.
4. Rank 0 merges the existing cache (first: its clip records win) and every shard into the
   target with `merge_caches` (written aside and renamed: never half-written), then deletes the
   shard files. The sequences they hold are disjoint (step 2), so nothing is dropped; the only
   duplicates possible are leftovers of a run killed between merge and delete, equal copies.
   A killed run's shard is merged whole, whatever modalities it holds; should one of them
   differ from the cache's by now (rebuilt with other settings since), the merge refuses,
   naming both files, and the shard file is left for the user to delete.

Multi-node: the target's folder must be shared by the nodes (rank 0 reads every shard); if
HDF5 cannot lock files there, set HDF5_USE_FILE_LOCKING=FALSE.

The process group carries only small Python objects (an ok flag, a reason, counts), so it is
gloo even on GPUs: no NCCL communicator or GPU memory, no NCCL watchdog to outlive while ranks
finish hours apart, and several processes may share one GPU (useful when decoding is the limit).
"""

from __future__ import annotations

import atexit
import os
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

from emo.errors import EmoError, describe

from emo.extract.run import local as runner
if TYPE_CHECKING:
    from emo.extract.run.local import ExtractionRequest, ExtractionSummary, ModalityExtraction

T = TypeVar("T")

# Ranks meet at the end to merge, after the slowest shard: on a large dataset that can be hours
# after the fastest. A hung rank is the launcher's business (a crashed one ends the job at once).
COORDINATION_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_context(environ: Mapping[str, str] | None = None) -> DistributedContext | None:
    """torchrun's RANK / WORLD_SIZE / LOCAL_RANK when WORLD_SIZE > 1, else None (a single process)."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        rank, local_rank = int(env["RANK"]), int(env["LOCAL_RANK"])
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    except KeyError as missing:
        raise EmoError(f"WORLD_SIZE is {env['WORLD_SIZE']} but {missing.args[0]} is unset: start `emo extract` with torchrun") from None
    except ValueError:
        values = ", ".join(f"{k}={env.get(k)!r}" for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"))
        raise EmoError(f"torchrun environment is not numeric: {values}") from None
    if not 0 <= rank < world:
        raise EmoError(f"RANK {rank} is outside 0..{world - 1} (WORLD_SIZE {world})")
    return DistributedContext(rank, world, local_rank, local_world)


def is_main_process() -> bool:
    """False only on torchrun ranks other than 0: those leave printing to rank 0."""
    try:
        context = distributed_context()
    except EmoError:
        return True
    return context is None or context.is_main


def shard_cache_path(cache_path: str | Path, rank: int, world_size: int) -> Path:
    """Rank `rank`'s shard cache beside the target: kor.h5 -> kor.rank0of4.h5."""
    path = Path(cache_path)
    return path.with_name(f"{path.stem}.rank{rank}of{world_size}{path.suffix}")


def stale_shard_paths(cache_path: str | Path, world_size: int) -> list[Path]:
    """Shard caches of an earlier run with another number of processes (this run cannot resume them)."""
    path = Path(cache_path)
    current = {shard_cache_path(path, r, world_size).name for r in range(world_size)}
    found = path.parent.glob(f"{path.stem}.rank*of*{path.suffix}") if path.parent.is_dir() else []
    return sorted(p for p in found if p.name not in current)


def rank_device(requested: str | None, context: DistributedContext) -> str:
    """cuda:LOCAL_RANK for "cuda" or the default on a GPU machine (wrapping round when processes
    outnumber GPUs); anything else (cpu, an explicit cuda:N) as asked."""
    import torch

    from emo.accel import resolve_device

    device = str(resolve_device(requested))
    if device == "cuda":
        device = f"cuda:{context.local_rank % torch.cuda.device_count()}"
    if device.startswith("cuda:"):
        torch.cuda.set_device(device)  # libraries that use "the current device" pick this rank's
    return device


class _Group:
    """The gloo process group, used for one thing: every rank learns whether every step worked."""

    def __init__(self, context: DistributedContext):
        global _OWN_GROUP
        import torch.distributed as dist

        self.dist = dist
        self.context = context
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=COORDINATION_TIMEOUT)
            _OWN_GROUP = True
            atexit.register(end_distributed)  # for library callers; `emo extract` ends it itself

    def run(self, step: str, work: Callable[[], T], share: Callable[[T], Any] | None = None) -> tuple[T, list[Any]]:
        """Run `work` on this rank, then agree: every rank gets every rank's `share(result)`, or,
        when any rank failed, every rank raises one EmoError naming the rank and its reason."""
        result, failure = None, None
        try:
            result = work()
        except EmoError as err:
            failure = str(err)
        except Exception as err:  # a bug: the others must still hear of it instead of waiting forever
            traceback.print_exc()  # now, while this process surely lives (torchrun ends it when another exits)
            failure = describe(err)
        payload = share(result) if share is not None and failure is None else None
        outcomes: list[Any] = [None] * self.context.world_size
        self.dist.all_gather_object(outcomes, (failure, payload))
        failed = [(rank, reason) for rank, (reason, _) in enumerate(outcomes) if reason is not None]
        if failed:
            rank, reason = failed[0]
            others = f" (and on {len(failed) - 1} more rank{'s' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
            raise EmoError(f"{step} failed on rank {rank} of {self.context.world_size}{others}: {reason}")
        return result, [payload for _, payload in outcomes]  # type: ignore[return-value]


_OWN_GROUP = False  # whether this module started the process group (and so ends it)


def end_distributed(timeout_s: float = 120.0) -> None:
    """Leave together, then close the process group (a no-op outside torchrun).

    Call it after rank 0 has printed its report: when the first process exits non-zero, torchrun
    ends the others at once, so without this rank 0 could be killed before saying why.
    """
    global _OWN_GROUP
    if not _OWN_GROUP:
        return
    import torch.distributed as dist

    _OWN_GROUP = False
    if not dist.is_initialized():
        return
    try:
        dist.monitored_barrier(timeout=timedelta(seconds=timeout_s))
    except RuntimeError:  # a rank died or hangs: leave all the same
        pass
    dist.destroy_process_group()


def run_distributed_extraction(context: DistributedContext, request: "ExtractionRequest") -> "ExtractionSummary":
    """This rank's part of a torchrun extraction (see the module docstring); every rank returns the
    summary of the merged cache, or every rank raises EmoError. The process group stays open:
    call `end_distributed()` once rank 0 has reported (else it ends when the process exits)."""
    from emo.extract.options import extract_options_for

    dataset, root, options = request.dataset, request.root, request.options
    force, retry_failed, progress, console = request.force, request.retry_failed, request.progress, request.console
    cache_path = Path(request.cache_path)
    world, main = context.world_size, context.is_main
    shard_paths = [shard_cache_path(cache_path, r, world) for r in range(world)]
    report = request.report_console if main else None
    group = _Group(context)  # left open: end_distributed() once the results are reported

    def load():
        scan, skipped = runner.scan_dataset(dataset, root, request.dataset_options, report)
        wanted = runner.choose_modalities(scan.clips, request.modalities, root, dataset)
        return scan, skipped, runner.build_extractors(wanted, options, rank_device(options.device, context))

    (scan, skipped, extractors), _ = group.run("loading the dataset and extractors", load)
    clips = runner.shard_clips(scan.clips, (context.rank, world))
    recorded = {m: extract_options_for(m, options) for m in extractors}
    if report is not None:
        from rich.text import Text  # plain text: paths are never parsed as markup

        for stale in stale_shard_paths(cache_path, world):
            report.print(Text(f"{stale}: a shard of an earlier run with another process count; not used", style="yellow"))
        if progress:
            report.print(
                Text(f"torchrun: {world} processes; the bars show rank 0's shard ({len(clips)} of {len(scan.clips)} clips); "
                f"shards {shard_paths[0].name} ... merge into {cache_path} at the end"),
                highlight=False,
            )

    table_changes: list = []  # rank 0's: what the rerun changed in the target's clip table

    def update_target():
        if main and cache_path.exists():
            return _prepare_target(cache_path, dataset, scan, extractors, recorded, force, retry_failed, table_changes.append)
        return None

    _, targets = group.run("updating the existing cache", update_target, share=lambda state: state)
    target_state: dict[str, tuple[str, int]] = targets[0] or {m: ("new", 0) for m in extractors}
    settled, label_names = _settled_clips(cache_path, extractors) if targets[0] else ({}, scan.label_names)

    def extract():
        if not clips:  # more processes than clips
            return []
        return runner.extract_into_cache(
            clips, shard_paths[context.rank], extractors, dataset=dataset, label_names=label_names, force=force,
            retry_failed=retry_failed, skip=settled, extract_options=recorded, workers=options.workers,
            budgets={"audio": options.batch_seconds}, progress=progress and main, console=console if main else None,
        )

    _, shard_summaries = group.run("extracting", extract, share=lambda summaries: summaries)

    def merge():
        if not main:
            return None
        return _merge_and_summarise(cache_path, shard_paths, dataset, scan, extractors, target_state, shard_summaries)

    _, merged = group.run("merging the shard caches", merge, share=lambda summaries: summaries)
    return runner.ExtractionSummary(
        dataset=dataset,
        cache_path=cache_path,
        clips=len(scan.clips),
        shard=None,
        skipped=len(skipped),
        skipped_reasons=skipped[: runner.MAX_REASONS_KEPT],
        modalities=merged[0],
        processes=world,
        rank=context.rank,
        table=table_changes[0] if table_changes else None,
    )


def _prepare_target(path: Path, dataset: str, scan, extractors, recorded, force: bool, retry_failed: bool, on_table=None):
    """Rank 0, existing cache: append new clips, compare fingerprints, retry failed clips.

    {modality: (action, clips retried)}; afterwards the cache says which clips are settled.
    """
    from emo.cache import CacheWriter

    runner.check_same_dataset(path, dataset)
    state = {}
    # The target follows the whole dataset: changed metadata updated, changed media back to pending.
    with CacheWriter(path, dataset=dataset, clips=scan.clips, label_names=scan.label_names, drop_absent=True) as writer:
        if on_table is not None:
            on_table(writer.table_changes)
        for modality, extractor in extractors.items():
            action = writer.open_modality(
                modality, extractor.fingerprint(), tuple(extractor.row_shape), extractor.dtype, force=force,
                options=recorded[modality],
            )
            state[modality] = (action, writer.retry_failed(modality) if retry_failed else 0)
    return state


def _settled_clips(path: Path, extractors) -> tuple[dict[str, set[str]], list[str]]:
    """Per modality, the clips the existing cache has settled (not pending), and its label order
    (the shards must use it, or the merge would refuse them)."""
    from emo.cache import STATUS_PENDING, CacheReader

    reader = CacheReader(path)
    settled = {}
    for modality in extractors:
        codes, _ = reader.status(modality)
        settled[modality] = {cid for cid, code in zip(reader.clips.ids, codes) if code != STATUS_PENDING}
    return settled, reader.clips.label_names


def _merge_and_summarise(
    cache_path: Path,
    shard_paths: Sequence[Path],
    dataset: str,
    scan,
    extractors,
    target_state: Mapping[str, tuple[str, int]],
    shard_summaries: Sequence[list["ModalityExtraction"]],
) -> list["ModalityExtraction"]:
    """Rank 0: merge the existing cache and the shards into the target, delete the shards, and
    count what the target now holds for this run's clips."""
    from emo.cache import CacheReader, merge_caches

    inputs = ([cache_path] if cache_path.exists() else []) + [p for p in shard_paths if p.exists()]
    merge_caches(inputs, cache_path, dataset=dataset)
    for shard in shard_paths:  # only now: until the merge is in place they are the only copy
        shard.unlink(missing_ok=True)
    reader = CacheReader(cache_path)
    run_ids = [c.id for c in scan.clips]
    summaries = []
    for modality in extractors:
        parts = [s for rank_summaries in shard_summaries for s in rank_summaries if s.modality == modality]
        action, retried = target_state[modality]
        summaries.append(
            runner.summarise_modality(
                reader,
                run_ids,
                modality,
                parts[0].backbone if parts else modality,
                action,
                extracted=sum(p.extracted for p in parts),
                seconds=max((p.seconds for p in parts), default=0.0),
                retried=retried + sum(p.retried for p in parts),
            )
        )
    return summaries
