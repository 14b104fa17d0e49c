"""The defaults users see, defined once in emo.constants: every entry point reports the same value."""

from __future__ import annotations

import inspect

import numpy as np


def test_the_default_backbones_are_the_same_for_cli_options_and_extractors():
    from typer.main import get_command

    from emo.cli import app
    from emo.extract.encoders.audio_backbones import make_audio_extractor
    from emo.extract.options import ExtractOptions
    from emo.extract.encoders.text_backbone import TextExtractor, make_text_extractor

    extract = get_command(app).commands["extract"]
    shown = {p.name: p.default for p in extract.params}
    options = ExtractOptions()
    audio = {shown["audio_backbone"], options.audio_backbone, inspect.signature(make_audio_extractor).parameters["name"].default}
    text = {shown["text_backbone"], options.text_backbone, inspect.signature(TextExtractor).parameters["backbone"].default,
            inspect.signature(make_text_extractor).parameters["backbone"].default}
    assert audio == {"facebook/wav2vec2-large-robust"}
    assert text == {"beomi/KcELECTRA-base-v2022"}


def test_the_face_stage_and_the_image_encoder_share_the_face_defaults():
    from emo.extract.decode.faces import FacesExtractor
    from emo.extract.encoders.image_backbone import VisualExtractor

    faces = FacesExtractor()
    visual = inspect.signature(VisualExtractor).parameters
    assert (faces.frames, faces.face_size) == (visual["frames"].default, visual["face_size"].default) == (16, 224)


def test_float16_max_is_the_largest_finite_float16():
    from emo.constants import FLOAT16_MAX

    assert FLOAT16_MAX == float(np.finfo(np.float16).max)
