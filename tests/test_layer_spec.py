"""The one layer-spec grammar and the one KEY=VALUE parser every option goes through."""

from __future__ import annotations

import pytest

from emo.errors import BackboneError, EmoError
from emo.key_value import split_key_value
from emo.layer_spec import encoder_layers, layers_by_modality, select_layers

CACHED = [6, 12, 24]


@pytest.mark.parametrize(
    "spec, expected",
    [("all", [6, 12, 24]), ("ALL ", [6, 12, 24]), ("last", [24]), ("-1", [24]), ("-2,6", [12, 6]), ("24, 6", [24, 6]),
     ([12, -1], [12, 24])],
)
def test_one_grammar_negative_counts_from_the_end(spec, expected):
    assert select_layers(spec, CACHED, "", "is not cached") == expected


@pytest.mark.parametrize(
    "spec, message",
    [("7", "layer 7 is not cached"), ("-4", "layer -4 is not cached"), ("last,6", "expected 'last', 'all' or comma"),
     ("first", "expected 'last', 'all'"), ("", "no layer selected"), ("6,-3", "selected twice")],
)
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(EmoError, match=message):
        select_layers(spec, CACHED, "", "is not cached")


def test_extraction_and_fit_agree_on_the_last_layer():
    # 13 hidden states (input + 12 layers): -1 and "last" are the output, as -1 of the cached ids is at fit time.
    assert encoder_layers("-1", 13, "m", "audio") == encoder_layers("last", 13, "m", "audio") == [12]
    assert encoder_layers("all", 3, "m", "text") == [0, 1, 2]
    with pytest.raises(BackboneError, match="m: audio layer 13 is out of range 0..12"):
        encoder_layers("13", 13, "m", "audio")


def test_layers_by_modality():
    assert layers_by_modality(["12,24", "text=last"], ["audio", "text"]) == {"audio": "12,24", "text": "last"}
    assert layers_by_modality("audio=6;text=-1", ["audio", "text"]) == {"audio": "6", "text": "-1"}
    assert layers_by_modality(None, ["audio"]) == {}
    with pytest.raises(EmoError, match="^--layers 'audio=': expected MODALITY=SPEC"):
        layers_by_modality(["audio="], ["audio"])


def test_key_value():
    assert split_key_value(" d_model = 256 ", "--set") == ("d_model", "256")
    assert split_key_value("a=b=c", "--option") == ("a", "b=c")  # the first '=' splits
    for bad in ("novalue", "=1", "key=", "  "):
        with pytest.raises(EmoError) as caught:
            split_key_value(bad, "--cache", "NAME=PATH")
        assert str(caught.value) == f"--cache {bad.strip()!r}: expected NAME=PATH"


def test_option_items_of_a_value_or_repeated_values():
    from emo.key_value import option_items

    assert option_items(None, ",") == []
    assert option_items("calm=neutral, ,boredom=-", ",") == ["calm=neutral", "boredom=-"]
    assert option_items(["a=1;b=2", " c=3 "], ";") == ["a=1", "b=2", "c=3"]
