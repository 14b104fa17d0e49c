"""Video frames for the face pipeline: PyAV decode at a fixed rate or a fixed count.

Only the frames that are kept are converted to RGB (the costly swscale step); the rest
are decoded and dropped, since inter-frame codecs need them anyway. Large gaps between
wanted frames are crossed by seeking to the keyframe before the next target instead of
decoding every frame in between.
"""

from __future__ import annotations

import os

import numpy as np

from emo.errors import ClipError, ClipMissing

# Seek instead of decoding through when the next wanted frame is this far ahead: below
# about one GOP a seek lands on a keyframe behind the current position and saves nothing.
SEEK_GAP_SECONDS = 2.0
# Headers may overstate a stream's length a little (edit lists, a last frame's duration);
# a stream that ends before this fraction of it is a truncated file, not a rounding issue.
TRUNCATED_FRACTION = 0.9


def sample_times(duration: float, fps: float | None = None, frames: int | None = None) -> np.ndarray:
    """Target times in seconds: every 1/fps from 0, or `frames` centres of equal slices of the clip."""
    if (fps is None) == (frames is None):
        raise ValueError("give exactly one of fps or frames")
    if frames is not None:
        if frames < 1:
            raise ValueError(f"frames must be positive, not {frames}")
        # Slice centres keep the first and last targets off the clip's edges, where
        # fades and cuts live, and spread K targets evenly over the whole clip.
        return (np.arange(frames) + 0.5) * (duration / frames)
    if fps <= 0:
        raise ValueError(f"fps must be positive, not {fps}")
    return np.arange(0.0, duration, 1.0 / fps)


def read_frames(path: str, fps: float | None = None, frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode `path` at `fps` frames per second or as `frames` frames spread evenly over the clip.

    Returns (frames uint8 (N, H, W, 3) RGB, timestamps float64 (N,) in seconds from the
    stream start). With `frames=K` there are always K rows (a frame repeats when the clip
    has fewer than K); with `fps` the rate is capped at the stream's own rate. Raises
    ClipError for a missing, unreadable or empty video and ClipMissing for a file with no
    video stream.
    """
    import av

    if fps is None and frames is None:
        raise ValueError("give fps or frames")
    if not os.path.isfile(path):
        raise ClipError(path, "video file not found")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ClipMissing(path, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            duration = _stream_duration(container, stream) or _duration_from_packets(container, stream)
            if not duration:
                raise ClipError(path, "no video frames in the stream")
            # MPEG-TS and some other containers give no average rate; FFmpeg still guesses one.
            frame_rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            rate = float(frame_rate) if frame_rate else None
            targets = sample_times(duration, fps=_capped(fps, rate), frames=frames)
            return _read_targets(container, stream, path, targets, rate, duration)
    except ClipError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise ClipError(path, f"cannot decode video: {_one_line(exc)}") from None


def _capped(fps: float | None, rate: float | None) -> float | None:
    """A rate above the stream's own would only repeat frames: cap it."""
    if fps is None or rate is None:
        return fps
    return min(fps, rate)


def _stream_duration(container, stream) -> float | None:
    """Seconds of video from the stream header, else the container header; None when neither knows."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _read_targets(container, stream, path: str, targets: np.ndarray, rate: float | None, duration: float):
    """One pass: each target time gets the frame on screen at that time (the first one after it, failing that)."""
    import av

    # A frame is on screen for [t, t + 1/rate); the 1 % margin keeps float error in
    # t + 1/rate from handing a target that falls exactly on a frame to its predecessor.
    shown_for = 0.99 / rate if rate else 0.0
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    picked: list[np.ndarray] = []
    times: list[float] = []
    k = 0
    position = -np.inf  # time of the last decoded frame
    last_frame = None
    seeking = True
    while k < len(targets):
        sought = False
        if seeking and targets[k] - max(position, 0.0) > SEEK_GAP_SECONDS:
            try:  # backward=True lands on the keyframe at or before the target
                container.seek(int((targets[k] + start) / stream.time_base), stream=stream, backward=True)
                sought = True
            except av.FFmpegError:
                seeking = False  # unseekable input: decode through instead
        gap_ahead = False
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            t = frame.time - start
            if sought:
                # Landing behind frames already passed means keyframes are further apart
                # than the gap: seeking only re-decodes, so decode straight through from now on.
                seeking, sought = t > position, False
            if t <= position:
                continue
            position, last_frame = t, frame
            if t + shown_for <= targets[k]:
                continue
            rgb = _to_rgb(frame)
            # Several targets fall on one frame when K exceeds the clip's frame count.
            while k < len(targets) and t + shown_for > targets[k]:
                picked.append(rgb)
                times.append(t)
                k += 1
            if k == len(targets) or targets[k] - t > SEEK_GAP_SECONDS:
                gap_ahead = True
                break
        if not gap_ahead:
            break  # end of stream
    if last_frame is None:
        raise ClipError(path, "no video frames could be decoded")
    if k < len(targets) and position < TRUNCATED_FRACTION * duration:
        raise ClipError(
            path, f"video stops at {position:.2f} s of the {duration:.2f} s its header states (truncated file?)"
        )
    if k < len(targets):
        # The header slightly overstated the duration: the remaining targets get the last frame.
        rgb = picked[-1] if times and times[-1] == position else _to_rgb(last_frame)
        picked.extend([rgb] * (len(targets) - k))
        times.extend([position] * (len(targets) - k))
    return np.stack(picked), np.asarray(times, dtype=np.float64)


def _duration_from_packets(container, stream) -> float | None:
    """No duration in the headers (some FLV/WebM/raw streams): read packet times without decoding, then rewind."""
    pts = np.array([p.pts for p in container.demux(stream) if p.pts is not None], dtype=np.float64)
    if not len(pts):
        return None
    container.seek(0)
    pts.sort()
    step = float(np.median(np.diff(pts))) if len(pts) > 1 else 0.0
    return float((pts[-1] - pts[0] + step) * stream.time_base)


def _to_rgb(frame) -> np.ndarray:
    """RGB uint8 (H, W, 3), turned upright when the stream carries a display rotation (phone video)."""
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = int(round((frame.rotation or 0) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=quarter_turns)) if quarter_turns else rgb


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
