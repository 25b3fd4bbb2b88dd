"""Bundled example NeXus files (see README.md here for their origin and licence)."""

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent
EXAMPLE_FILES = (EXAMPLES_DIR / "small-coda.hdf", EXAMPLES_DIR / "small-ymir.hdf")

__all__ = ["EXAMPLES_DIR", "EXAMPLE_FILES"]
