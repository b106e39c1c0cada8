"""One exception root; each subclass says what the delivery layer should do with the event."""

from __future__ import annotations


class AtedaError(Exception):
    """Root of every error this package raises on purpose."""


class BadInput(AtedaError):
    """Permanent: the input can never be processed. Quarantine it, say why, acknowledge the event.

    ``reason`` is a short machine-readable code (``not_avro``, ``truncated_avro``...); ``detail`` is for people.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TransientError(AtedaError):
    """The store or catalog is unavailable: raise so that the broker retries, then dead-letters."""


class ConfigError(AtedaError):
    """A setting is missing or malformed."""
