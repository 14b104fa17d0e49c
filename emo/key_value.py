"""The one KEY=VALUE parser of emo's options (`--set`, `--grid`, `--option`, `--label-map`, `--layers audio=...`).

Every caller gets the same rules and the same one-line error naming its option: a key and a
value on either side of the first `=`, both non-empty after stripping spaces.
"""

from __future__ import annotations

from typing import Sequence

from emo.errors import EmoError


def option_items(values: Sequence[str] | str | None, separator: str) -> list[str]:
    """The items of an option given once or repeated, each value a `separator`-joined list.

    ["calm=neutral,boredom=-", "ps=surprise"] and "calm=neutral,boredom=-,ps=surprise" (with ",")
    give the same three items; items are stripped and empty ones dropped; None gives none.
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in str(value).split(separator) if item.strip()]


def split_key_value(item: str, option: str, form: str = "KEY=VALUE") -> tuple[str, str]:
    """'d_model=256' -> ('d_model', '256'); no '=', an empty key or an empty value -> EmoError naming `option`."""
    key, sep, value = str(item).partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise EmoError(f"{option} {str(item).strip()!r}: expected {form}")
    return key, value
