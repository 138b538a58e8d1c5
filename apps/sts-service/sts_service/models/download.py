"""Resumable, verified downloads for `livedub-models pull` (the only code that downloads).

A file is fetched into ``<file>.part``; an interrupted fetch leaves it there and the next attempt
(the same run retries, or the next `pull`) asks for the rest with an HTTP ``Range`` request (a
server that answers 200 instead of 206 sends it whole again). Once complete the size and sha256 are
checked; a mismatch deletes the part file (it cannot be trusted to resume from) and fails. Only then
is it renamed into place, with its digest beside it in ``<file>.sha256``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

CHUNK = 1 << 20
USER_AGENT = "livedub-models/0.1"


class DownloadError(Exception):
    """A file could not be fetched or did not verify; the message says which and why."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, offset: int, timeout: float):
    if urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http and https URLs are fetched")
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # nosec B310  # scheme checked above
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part file is already whole
            return None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: {exc}") from None


def _attempt(url: str, part: Path, timeout: float, progress: Callable[[int], None] | None) -> None:
    """One request: append the rest to `part` (206) or rewrite it (200). Raises on interruption."""
    offset = part.stat().st_size if part.exists() else 0
    resp = _open(url, offset, timeout)
    if resp is None:
        return
    with resp:
        resumed = offset and resp.status == 206
        if resumed:
            start = (resp.headers.get("Content-Range") or "").removeprefix("bytes ").split("-", 1)[0]
            if start != str(offset):
                raise DownloadError(f"{url}: asked for bytes from {offset}, got {resp.headers.get('Content-Range')}")
        with open(part, "ab" if resumed else "wb") as out:
            written = offset if resumed else 0
            try:
                while block := resp.read(CHUNK):
                    out.write(block)
                    written += len(block)
                    if progress:
                        progress(written)
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(f"{url}: interrupted after {written} bytes ({exc})") from None
        length = resp.headers.get("Content-Length")
        if length is not None and written - (offset if resumed else 0) < int(length):
            raise DownloadError(f"{url}: interrupted after {written} bytes")


def fetch(url: str, dest: Path, *, size: int | None, sha256: str | None, attempts: int = 3,
          timeout: float = 30.0, progress: Callable[[int], None] | None = None) -> str:
    """Download `url` to `dest` (resuming a ``.part`` left from before); returns its sha256.

    With `size`/`sha256` the file must match them; without, whatever the server sends is taken
    (the caller decides whether that is acceptable)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if size is not None and part.exists() and part.stat().st_size > size:
        part.unlink()
    last: DownloadError | None = None
    for _ in range(max(1, attempts)):
        try:
            _attempt(url, part, timeout, progress)
            last = None
            break
        except DownloadError as exc:
            last = exc
    if last is not None:
        raise DownloadError(f"{last} (the part file {part.name} is kept: pull again to resume)")
    got_size = part.stat().st_size
    if size is not None and got_size != size:
        part.unlink()
        raise DownloadError(f"{url}: {got_size} bytes, the catalogue says {size}")
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink()
        raise DownloadError(f"{url}: sha256 {digest} is not the catalogue's {sha256}")
    os.replace(part, dest)
    dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n", encoding="utf-8")
    return digest
