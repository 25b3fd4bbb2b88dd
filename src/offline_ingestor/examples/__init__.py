"""Bundled example NeXus files (see README.md here for their origin and licence)."""

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent

__all__ = ["EXAMPLES_DIR"]
