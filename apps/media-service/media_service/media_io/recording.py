"""File outputs that never overwrite a recording: every open creates a new numbered segment.

A file output is closed and reopened whenever the input reconnects or a write fails (a full disk
included). Reopening the same path for writing would truncate what was recorded, so each open
claims the next free name with an exclusive create:

    name.flv, name.001.flv, name.002.flv, ...   (name.001, name.002, ... without an extension)

The number follows the highest one present, so a deleted earlier segment is never reused out of
order. A segment that received no byte at all is removed when it closes (a reopen attempt on a
full disk leaves no empty files behind).
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path


def segment_name(path: Path, number: int) -> Path:
    """`name.flv` for 0, `name.NNN.flv` (at least three digits) after that."""
    if number == 0:
        return path
    suffix = path.suffix
    stem = path.name[: -len(suffix)] if suffix else path.name
    return path.with_name(f"{stem}.{number:03d}{suffix}")


def next_segment_number(path: Path) -> int:
    """0 when nothing of this recording exists yet, else one more than the highest segment present."""
    suffix = path.suffix
    stem = path.name[: -len(suffix)] if suffix else path.name
    pattern = re.compile(re.escape(stem) + r"\.(\d{3,})" + re.escape(suffix) + "$")
    highest = 0 if path.exists() else -1
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return 0
    for name in names:
        m = pattern.match(name)
        if m:
            highest = max(highest, int(m.group(1)))
    return highest + 1


class SegmentFile:
    """A new segment of the recording at `path`, opened with an exclusive create; file-like for PyAV.

    `write` raises what the OS raises (ENOSPC for a full disk) and remembers it in `error`.
    """

    def __init__(self, path: str | os.PathLike):
        base = Path(path)
        number = next_segment_number(base)
        while True:
            self.path = segment_name(base, number)
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                break
            except FileExistsError:  # another writer claimed it meanwhile
                number += 1
        self.bytes_written = 0
        self.error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                self.bytes_written += n
                view = view[n:]
        except OSError as exc:
            self.error = self.error or exc
            raise
        return len(data)

    @property
    def disk_full(self) -> bool:
        return self.error is not None and self.error.errno in (errno.ENOSPC, errno.EDQUOT)

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            os.close(self._fd)
        except OSError as exc:  # a network filesystem may report a late write error here
            self.error = self.error or exc
        self._fd = -1
        if self.bytes_written == 0:
            try:
                self.path.unlink()
            except OSError:
                pass
