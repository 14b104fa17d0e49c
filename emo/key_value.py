"""The one KEY=VALUE parser of emo's options (`--set`, `--grid`, `--option`, `--label-map`, `--layers audio=...`).

Every caller gets the same rules and the same one-line error naming its option: a key and a
value on either side of the first `=`, both non-empty after stripping spaces.
"""

from __future__ import annotations

from emo.errors import EmoError


def split_key_value(item: str, option: str, form: str = "KEY=VALUE") -> tuple[str, str]:
    """'d_model=256' -> ('d_model', '256'); no '=', an empty key or an empty value -> EmoError naming `option`."""
    key, sep, value = str(item).partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise EmoError(f"{option} {str(item).strip()!r}: expected {form}")
    return key, value
