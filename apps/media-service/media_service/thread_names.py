"""Python thread names given to the kernel too, so `top -H`, `ps -L` and /proc/<pid>/task/*/comm
show which stream and stage a thread works for (CPython 3.11 leaves every thread "python").
Linux only; elsewhere a no-op. The kernel keeps 15 bytes of a name."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

_PR_SET_NAME = 15
_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        _libc = None


def name_native_thread(name: str | None = None) -> None:
    """Give the calling thread's kernel name `name` (default: its Python name), cut to 15 bytes."""
    if _libc is None:
        return
    raw = (name or threading.current_thread().name).encode(errors="replace")[:15]
    _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0)
