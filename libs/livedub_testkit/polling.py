"""Waiting on real processes: poll a condition until it holds. The timeout only bounds how long a
test waits for something that must happen; it asserts nothing about how fast it happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], what: str, timeout: float = 20.0, poll: float = 0.2) -> T:
    """Call `predicate` every `poll` seconds until it returns something truthy, and return that.
    Fails the test with `what` and the last value when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {value!r})")
        time.sleep(poll)
    return value
