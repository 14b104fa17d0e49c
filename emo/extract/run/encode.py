"""The encode loop, once: clips -> prepared ahead on threads -> batches by cost -> encoded -> cast as stored.

Two sinks consume it: the cache writer (`emo extract`, emo.extract.run.local) and the predictor
(`emo predict`, emo.predictor.scoring). Both therefore see the same arrays (the cache's
dtype, the same shape and finiteness checks) and the same split of errors:

* a clip's own problem (ClipError / ClipMissing from `prepare`, an exception while encoding
  it alone, a sequence of the wrong shape, empty or non-finite) comes back as that clip's
  `Encoded.error`; the loop goes on with the other clips;
* a BackboneError (the model itself is broken, from `prepare` or `encode`) is raised: every
  further clip would fail the same way, so the caller stops instead of recording each one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from emo.clip import Clip
from emo.errors import BackboneError, ClipError, describe
from emo.extract.run.batching import Prepared, batches_by_cost, prepare_ahead
from emo.extract.options import DEFAULT_BUDGETS

if TYPE_CHECKING:
    import numpy as np

    from emo.extract.base import Extractor


@dataclass
class Encoded:
    """One clip's outcome: its sequence as the cache stores it, or the per-clip error that stopped it."""

    clip: Clip
    array: "np.ndarray | None" = None  # (T, *row_shape) in the extractor's dtype (float16 / uint8)
    error: BaseException | None = None  # ClipError (with its status) or any other per-clip exception


def batch_budget(extractor: "Extractor", modality: str, requested: float | None = None) -> float:
    """Cost units per batch: the user's (--batch-seconds) first, then the extractor's own, then ours."""
    return float(requested or getattr(extractor, "batch_budget", None) or DEFAULT_BUDGETS[modality])


def default_prefetch(workers: int) -> int:
    # Enough look-ahead to keep every worker busy while a batch is encoded, small enough to bound memory.
    return max(4 * workers, 16)


def encode_clips(
    extractor: "Extractor", clips: Sequence[Clip], *, workers: int, budget: float, prefetch: int | None = None
) -> Iterator[list[Encoded]]:
    """Every clip's `Encoded`, a list at a time, each clip exactly once.

    Each list is one encoded batch, or the clips whose preparation failed since the last batch
    (they never reach a batch and come first). The lists are the batch boundaries so that a sink
    can commit a batch atomically (the cache writer) and count progress per batch; a sink that
    does not care just flattens them. Raises BackboneError (see the module docstring).
    """
    prepare_failed: list[Encoded] = []

    def prepared_ok(stream: Iterator[Prepared]) -> Iterator[Prepared]:
        for item in stream:
            if item.error is None:
                yield item
            elif isinstance(item.error, BackboneError):
                raise item.error
            else:
                prepare_failed.append(Encoded(item.clip, error=item.error))

    stream = prepare_ahead(extractor.prepare, clips, workers, prefetch or default_prefetch(workers))
    row_shape, dtype = tuple(extractor.row_shape), extractor.dtype
    for batch in batches_by_cost(prepared_ok(stream), extractor.cost, budget):
        if prepare_failed:
            yield prepare_failed
            prepare_failed = []
        outcomes = []
        for item, output in encode_batch(extractor, batch):
            if isinstance(output, BaseException):
                outcomes.append(Encoded(item.clip, error=output))
                continue
            array, problem = as_stored(output, row_shape, dtype)
            outcomes.append(Encoded(item.clip, error=ClipError(None, problem)) if problem else Encoded(item.clip, array))
        yield outcomes
    if prepare_failed:  # failures after the last batch, or every clip failed to prepare
        yield prepare_failed


def failure_reason(error: BaseException) -> str:
    """What the cache / a prediction records for a failed clip: a ClipError's reason, else the
    exception's type and first line (a decoder bug or an odd file, not worth a traceback per clip)."""
    if isinstance(error, ClipError):
        return error.reason
    return describe(error)


def encode_batch(extractor: "Extractor", batch: list[Prepared]) -> list[tuple[Prepared, Any]]:
    """(item, array | exception) per clip. A batch that raises is retried clip by clip, so one
    bad clip (or one too long for memory) costs only itself, never its batch-mates."""
    try:
        outputs = extractor.encode([item.value for item in batch])
        if len(outputs) != len(batch):
            raise RuntimeError(f"encode returned {len(outputs)} arrays for {len(batch)} clips")
        return list(zip(batch, outputs))
    except BackboneError:
        raise
    except Exception as exc:
        if len(batch) == 1:
            return [(batch[0], exc)]
    results: list[tuple[Prepared, Any]] = []
    for item in batch:
        results.extend(encode_batch(extractor, [item]))
    return results


def as_stored(array: Any, row_shape: tuple[int, ...], dtype: str) -> tuple[Any, str | None]:
    """The array as it will be stored, or a reason why it cannot be (wrong shape, empty, non-finite)."""
    import numpy as np

    array = np.asarray(array)
    if array.ndim != len(row_shape) + 1 or tuple(array.shape[1:]) != row_shape:
        return array, f"extractor returned shape {array.shape}, expected (T, {', '.join(map(str, row_shape))})"
    if array.shape[0] == 0:
        return array, "extractor returned an empty sequence (0 frames)"
    with np.errstate(over="ignore"):  # overflow is reported below as a clip failure, not a warning
        stored = array.astype(dtype, copy=False)
    # Checked after the cast: a float32 value beyond float16's range becomes inf only here.
    if stored.dtype.kind == "f" and not np.isfinite(stored).all():
        return stored, f"non-finite values in the {dtype} sequence (NaN, or beyond the {dtype} range)"
    return stored, None
