"""The HDF5 feature cache: the contract between `emo extract` and `emo fit`."""

from emo.cache.fingerprint import canonical, differences
from emo.cache.merge import MergeSummary, merge_caches
from emo.cache.reader import CacheReader, ClipTable
from emo.cache.schema import (
    MODALITIES,
    SCHEMA_VERSION,
    STATUS_FAILED,
    STATUS_MISSING,
    STATUS_NAMES,
    STATUS_OK,
    STATUS_PENDING,
)
from emo.cache.sequences import Sequences
from emo.cache.writer import CacheWriter

__all__ = [
    "CacheReader",
    "CacheWriter",
    "MergeSummary",
    "merge_caches",
    "ClipTable",
    "Sequences",
    "MODALITIES",
    "SCHEMA_VERSION",
    "STATUS_PENDING",
    "STATUS_OK",
    "STATUS_MISSING",
    "STATUS_FAILED",
    "STATUS_NAMES",
    "canonical",
    "differences",
]
