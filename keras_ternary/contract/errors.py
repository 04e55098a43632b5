"""The exception the contract modules raise; callers re-raise it as their own error type."""

from __future__ import annotations

__all__ = ["ContractError"]


class ContractError(ValueError):
    """Input that breaks the export ↔ hw_sim contract (bad metadata, a damaged .tflite, ...)."""
