"""Decoding and preparing inputs: audio to 16 kHz mono, video frames, faces found and aligned."""
