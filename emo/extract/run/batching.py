"""Feeding an encoder: CPU preparation on threads ahead of it, and batches cut by a cost budget."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator, Sequence

from emo.clip import Clip


@dataclass
class Prepared:
    """One clip after `prepare`: either its prepared input or the exception that stopped it."""

    clip: Clip
    value: Any = None
    error: BaseException | None = None


def prepare_ahead(
    prepare: Callable[[Clip], Any], clips: Sequence[Clip], workers: int, prefetch: int
) -> Iterator[Prepared]:
    """Yield prepared clips in input order while up to `prefetch` more are prepared on `workers` threads.

    The window bounds memory (at most `prefetch` prepared clips wait for the encoder) and the
    order is kept so that duration-sorted clips reach the batcher still sorted. Exceptions
    (ClipError or anything else) are handed over with their clip, never raised here.
    """

    def run(clip: Clip) -> Prepared:
        try:
            return Prepared(clip, value=prepare(clip))
        except Exception as exc:  # recorded per clip by the caller
            return Prepared(clip, error=exc)

    if not clips:
        return
    window: deque[Future] = deque()
    upcoming = iter(clips)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emo-prepare") as pool:
        try:
            for clip in upcoming:
                window.append(pool.submit(run, clip))
                if len(window) >= prefetch:
                    break
            while window:
                done = window.popleft().result()
                next_clip = next(upcoming, None)
                if next_clip is not None:
                    window.append(pool.submit(run, next_clip))
                yield done
        finally:
            # A consumer that stops early (error, Ctrl-C) must not wait for the whole queue.
            for future in window:
                future.cancel()


def batches_by_cost(items: Iterable[Prepared], cost: Callable[[Any], float], budget: float) -> Iterator[list[Prepared]]:
    """Group prepared clips into batches whose summed cost stays within `budget`.

    A clip that alone exceeds the budget becomes a batch of one (it still has to be encoded).
    """
    batch: list[Prepared] = []
    spent = 0.0
    for item in items:
        item_cost = float(cost(item.value))
        if batch and spent + item_cost > budget:
            yield batch
            batch, spent = [], 0.0
        batch.append(item)
        spent += item_cost
    if batch:
        yield batch


def batching_order(clips: Sequence[Clip]) -> list[Clip]:
    """Longest known duration first, so a batch holds similar lengths (little padding) and an
    out-of-memory batch shows up at the start rather than hours in; unknown durations follow in order."""
    known = [c for c in clips if c.duration is not None]
    unknown = [c for c in clips if c.duration is None]
    return sorted(known, key=lambda c: -c.duration) + unknown


def _header_duration(path: str) -> float | None:
    import soundfile

    try:
        info = soundfile.info(path)
    except Exception:  # not a soundfile format (mp4, flv...) or unreadable: the clip's prepare will tell
        return None
    return float(info.frames) / info.samplerate if info.samplerate else None


def with_probed_durations(clips: Sequence[Clip], workers: int) -> list[Clip]:
    """Fill unknown durations from audio file headers (adapters never open media; one header read
    per clip is cheap next to decoding it), so batches can be sorted by length. Copies, never mutates."""
    todo = [i for i, c in enumerate(clips) if c.duration is None and c.audio]
    if not todo:
        return list(clips)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emo-probe") as pool:
        durations = list(pool.map(_header_duration, [clips[i].audio for i in todo]))
    filled = list(clips)
    for i, duration in zip(todo, durations):
        if duration is not None:
            filled[i] = replace(clips[i], duration=round(duration, 3))
    return filled
