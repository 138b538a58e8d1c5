"""A value handed from one thread to another, so that neither reaches into what the other runs."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    """The newest value one thread posted, taken by the thread that uses it when it is ready for
    it (e.g. before its next step). Only the latest counts: a value not yet taken is replaced."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: T | None = None

    def post(self, value: T) -> None:
        with self._lock:
            self._value = value

    def take(self) -> T | None:
        """The value posted since the last take, or None."""
        with self._lock:
            value, self._value = self._value, None
        return value
