"""The one grammar of a hidden-layer selection: `--audio-layers` / `--text-layers` at extraction,
`--layers` at fit, sweep and eval.

    all       every available layer
    last      the last available layer (the same as -1)
    I,J,K     these layers, in the order given; I >= 0 names layer I, a negative I counts from the
              end of the available layers, Python-style (-1 = last, -2 = the one before)

"Available" is the encoder's hidden states at extraction (0 = its input, N = its output) and the
cached layer ids at fit time, so `-1` means the last one in both places.
"""

from __future__ import annotations

from typing import Sequence

from emo.errors import EmoError

GRAMMAR = "'last', 'all' or comma-separated integers like '12,18,24' (negative: from the end, -1 = last)"


def select_layers(
    spec: str | Sequence[int], available: Sequence[int], where: str, absent: str, error: type[EmoError] = EmoError
) -> list[int]:
    """A layer spec (or a list of layer ids) -> the chosen ids among `available`, in the order given.

    `where` starts every message (e.g. "facebook/wav2vec2-base: audio "), `absent` ends the one for
    a layer that is not there (e.g. "is not cached (cached layers: [6, 12, 24])"); `error` is the
    EmoError subclass raised.
    """
    available = list(available)
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "all":
            return available
        if text == "last":
            text = "-1"
        try:
            wanted = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise error(f"{where}layers {spec!r}: expected {GRAMMAR}") from None
    else:
        wanted = [int(index) for index in spec]
    if not wanted:
        raise error(f"{where}layers {spec!r}: no layer selected")
    chosen = []
    for index in wanted:
        if index < 0 and -len(available) <= index:
            chosen.append(available[index])
        elif index >= 0 and index in available:
            chosen.append(index)
        else:
            raise error(f"{where}layer {index} {absent}")
    if len(set(chosen)) != len(chosen):
        raise error(f"{where}layers {spec!r}: a layer is selected twice")
    return chosen


def encoder_layers(spec: str | Sequence[int], hidden_states: int, backbone: str, modality: str) -> list[int]:
    """The hidden states an extractor keeps: indices 0 (the encoder's input) .. hidden_states - 1 (its output)."""
    from emo.errors import BackboneError

    last = hidden_states - 1
    return select_layers(
        spec, range(hidden_states), f"{backbone}: {modality} ",
        f"is out of range 0..{last} (0 = the encoder's input, {last} = its last layer, -1 = the last too)", BackboneError,
    )


def layers_by_modality(specs: Sequence[str] | str | None, modalities: Sequence[str]) -> dict[str, str]:
    """`--layers` values -> {modality: spec}. "12,18,24" applies to every modality, "audio=last" to one;
    several go in one value separated by ';' or as repeated options."""
    from emo.key_value import option_items, split_key_value

    out: dict[str, str] = {}
    for part in option_items(specs, ";"):
        if "=" in part:
            modality, value = split_key_value(part, "--layers", "MODALITY=SPEC (e.g. audio=12,18) or a SPEC for all")
            out[modality] = value
        else:
            for m in modalities:
                out.setdefault(m, part)
    return out


def stored_layer_ids(fingerprint: dict, row_shape: tuple) -> list:
    """The layer ids along axis 1 of a cached feature row: the fingerprint's `layers` when it lists
    one per row, else positions (a features modality with no layer choice, e.g. openSMILE)."""
    listed = fingerprint.get("layers")
    if isinstance(listed, list) and len(listed) == row_shape[0]:
        return listed
    return list(range(row_shape[0]))
