"""The suite collects as one run: pytest (rootdir-less, no __init__.py) imports test modules by
basename, so two test files with one name in different folders stop `make test` at collection
(it happened twice when branches merged: test_captions.py, test_voices.py)."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1]
