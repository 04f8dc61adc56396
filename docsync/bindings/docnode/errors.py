"""Why an operation or a rollback did not go through."""

from __future__ import annotations


class OperationFailed(Exception):
    """The library rejects an operation, which rolls back the open transaction.

    ``stops`` ends the batch; ``layers`` is how many rollbacks the library
    runs for it (two for an insert rejected inside ``_insertRange``).
    """

    def __init__(self, message: str, *, stops: bool = False, layers: int = 1) -> None:
        super().__init__(message)
        self.stops = stops
        self.layers = layers


class RollbackFailed(ValueError):
    """An undo entry failed while rolling back; the library never returns then."""
