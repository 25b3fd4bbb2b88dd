"""Test helpers shipped with the package (like structlog.testing)."""

from .scicat_standin import Account, Fault, ScicatStandin

__all__ = ["Account", "Fault", "ScicatStandin"]
