"""Errors a user can act on. The CLI prints them as one line (no traceback)."""

from __future__ import annotations


class EmoError(Exception):
    """Base: bad input or state that the user can fix; message names the file and the reason."""


class DatasetError(EmoError):
    """A dataset root or manifest that cannot be turned into clips."""


class CacheError(EmoError):
    """A cache file that cannot be read or written as asked."""


class BackboneError(EmoError):
    """A backbone (model or built-in extractor) that cannot be loaded."""


class ClipError(EmoError):
    """One clip failed (corrupt file, no audio track, zero length...): recorded, the batch goes on."""

    status = "failed"

    def __init__(self, path: str | None, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class ClipMissing(ClipError):
    """The clip has no such modality (empty transcript, no face, no video): recorded as missing."""

    status = "missing"


# How much of an unforeseen exception's message a one-line error or a recorded reason keeps.
DESCRIBE_CHARS = 200


def describe(exc: BaseException) -> str:
    """`Type: first line of the message` (at most DESCRIBE_CHARS of it), or `Type` alone when the
    message is empty: an exception we did not raise ourselves, told in one line."""
    lines = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {lines[0].strip()[:DESCRIBE_CHARS]}" if lines else name
