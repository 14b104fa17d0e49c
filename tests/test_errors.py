"""emo.errors.describe: the one `Type: first line` form of an exception we did not raise."""

from __future__ import annotations

import pytest

from emo.errors import DESCRIBE_CHARS, BackboneError, describe


def test_the_type_and_the_first_line_only():
    assert describe(RuntimeError("  CUDA out of memory.\nTried to allocate 2 GiB\n")) == "RuntimeError: CUDA out of memory."


def test_an_empty_message_gives_the_type_alone():
    assert describe(ValueError()) == "ValueError"
    assert describe(OSError("  \n ")) == "OSError"


def test_a_long_first_line_is_cut():
    assert describe(ValueError("x" * 1000)) == "ValueError: " + "x" * DESCRIBE_CHARS


def test_a_hub_failure_with_an_empty_message_is_still_a_one_line_backbone_error(monkeypatch):
    """It was an IndexError (str(exc).splitlines()[0] of an empty message)."""
    import huggingface_hub

    from emo.extract.encoders.hub import resolve_pretrained

    def fail(*args, **kwargs):
        raise ConnectionError()

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(BackboneError, match=r"^nobody/nothing: cannot load from the Hugging Face hub \(ConnectionError\); "):
        resolve_pretrained("nobody/nothing")
