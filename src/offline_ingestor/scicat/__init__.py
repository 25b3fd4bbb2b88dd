"""SciCat HTTP client and payload helpers."""

from .client import ScicatClient, backoff_delay

__all__ = ["ScicatClient", "backoff_delay"]
