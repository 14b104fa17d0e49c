"""What the bench scripts share: this checkout's emo on sys.path, the argument parser, --threads.

bench/ is not a package: `python bench/NAME.py` puts bench/ on sys.path, so each script can
`import _common` (before its emo imports, which then come from this checkout).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

THREADS_HELP = "torch intra-op threads (default: torch's)"


def bench_parser(doc: str, summary_only: bool = False) -> argparse.ArgumentParser:
    """The parser of a bench script: its docstring as the help (or only the docstring's first line)."""
    if summary_only:
        return argparse.ArgumentParser(description=doc.splitlines()[0])
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_threads(parser: argparse.ArgumentParser, default: int | None = None, help: str = THREADS_HELP) -> None:
    parser.add_argument("--threads", type=int, default=default, help=help)


def set_threads(threads: int | None) -> None:
    """torch's intra-op threads when given (0 or None: torch's own default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
