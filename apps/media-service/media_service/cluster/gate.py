"""The output side of a lease: a writer that refuses to write once this replica may no longer
hold the stream (`LeaseClock.valid`, a float comparison: cheap enough for every frame).

When the gate closes the writer's relay is killed rather than closed, so what is queued for a
destination that a successor may already be publishing to is dropped, not flushed."""

from __future__ import annotations

from collections.abc import Callable

from ..media_io.output import OutputError

LEASE_LOST = "lease_lost"


def refused() -> OutputError:
    return OutputError("this replica does not hold the stream's lease (now or any more): not writing",
                       kind=LEASE_LOST)


class GatedWriter:
    """Wraps an OutputWriter (or HlsWriter): every write first asks `may_write()`."""

    def __init__(self, writer, may_write: Callable[[], bool]):
        self._writer, self._may_write = writer, may_write

    def _check(self) -> None:
        if not self._may_write():
            relay = getattr(self._writer, "relay", None)
            if relay is not None:
                relay.kill()
            raise refused()

    def write_audio(self, *args, **kwargs) -> None:
        self._check()
        self._writer.write_audio(*args, **kwargs)

    def write_video(self, *args, **kwargs) -> None:
        self._check()
        self._writer.write_video(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._writer, name)
