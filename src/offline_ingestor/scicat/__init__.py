"""SciCat HTTP client and payload helpers."""

from .client import ScicatClient

__all__ = ["ScicatClient"]
