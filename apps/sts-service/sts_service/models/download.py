"""Resumable, verified downloads for `livedub-models pull` (the only code that downloads).

A file is fetched into ``<file>.part``, and what identifies the server's version of it (a strong
ETag, else Last-Modified) into ``<file>.part.validator``. An interrupted fetch leaves both; the next
attempt (the same run retries, or the next `pull`) asks for the rest with ``Range`` and
``If-Range: <validator>``: the server sends the rest only if it still has that version (206) and
the whole of a changed file otherwise (200, rewritten from zero), so two versions are never
spliced. A part without a validator (the server gave none) is fetched again from zero. Past the
expected size (the catalogue's, else ``MAX_UNSIZED_BYTES``) the download is aborted at once and
the part deleted. Once complete the size and sha256 are checked; a mismatch deletes the part file
(it cannot be trusted to resume from) and fails. Only then is it renamed into place, with its
digest beside it in ``<file>.sha256``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

CHUNK = 1 << 20
USER_AGENT = "livedub-models/0.1"
MAX_UNSIZED_BYTES = 8 * 1024**3  # a file the catalogue gives no size for (the largest Whisper is ~3 GB)


class DownloadError(Exception):
    """A file could not be fetched or did not verify; the message says which and why."""


class TooLarge(DownloadError):
    """More bytes than expected: not worth retrying or resuming."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_file(dest: Path) -> Path:
    """Where the sha256 of `dest` is kept once it is in place."""
    return dest.with_name(dest.name + ".sha256")


def written_files(dest: Path) -> tuple[Path, ...]:
    """Every path a fetch of `dest` writes (the caller checks they stay in the models directory)."""
    part = dest.with_name(dest.name + ".part")
    return dest, part, _validator_file(part), digest_file(dest)


def recorded_digest(dest: Path) -> str | None:
    """The sha256 kept beside `dest` when it was pulled, if any."""
    sidecar = digest_file(dest)
    words = sidecar.read_text(encoding="utf-8", errors="replace").split() if sidecar.is_file() else []
    return words[0].lower() if words else None


def _validator_file(part: Path) -> Path:
    return part.with_name(part.name + ".validator")


def _usable(value: str | None) -> str | None:
    """`value` if If-Range can name it: not a weak ETag, one header line."""
    value = (value or "").strip()
    return value if value and not value.startswith("W/") and "\r" not in value and "\n" not in value else None


def _validator(headers) -> str | None:
    """What identifies the server's version: a strong ETag, else Last-Modified."""
    return _usable(headers.get("ETag")) or _usable(headers.get("Last-Modified"))


def _open(url: str, offset: int, validator: str | None, timeout: float):
    if urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http and https URLs are fetched")
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # nosec B310  # scheme checked above
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part file is already whole
            return None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: {exc}") from None


def _attempt(url: str, part: Path, limit: int, timeout: float, progress: Callable[[int], None] | None) -> None:
    """One request: append the rest to `part` (206) or rewrite it (200). Raises on interruption."""
    validator_file = _validator_file(part)
    offset = part.stat().st_size if part.exists() else 0
    validator = _usable(validator_file.read_text(encoding="utf-8")) if offset and validator_file.is_file() else None
    if not validator:
        offset = 0  # nothing tells whether the server still has the version the part began
    resp = _open(url, offset, validator, timeout)
    if resp is None:
        return
    with resp:
        resumed = offset and resp.status == 206
        if resumed:
            start = (resp.headers.get("Content-Range") or "").removeprefix("bytes ").split("-", 1)[0]
            if start != str(offset):
                raise DownloadError(f"{url}: asked for bytes from {offset}, got {resp.headers.get('Content-Range')}")
        else:
            fresh = _validator(resp.headers)
            if fresh:
                validator_file.write_text(fresh + "\n", encoding="utf-8")
            else:
                validator_file.unlink(missing_ok=True)
        with open(part, "ab" if resumed else "wb") as out:
            written = offset if resumed else 0
            try:
                while block := resp.read(CHUNK):
                    written += len(block)
                    if written > limit:
                        raise TooLarge(f"{url}: more than {limit} bytes, the most expected: aborted")
                    out.write(block)
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
    (the caller decides whether that is acceptable), up to ``MAX_UNSIZED_BYTES``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _, part, validator_file, sidecar = written_files(dest)

    def discard() -> None:
        part.unlink(missing_ok=True)
        validator_file.unlink(missing_ok=True)

    limit = MAX_UNSIZED_BYTES if size is None else size
    if part.exists() and part.stat().st_size > limit:
        discard()
    last: DownloadError | None = None
    for _ in range(max(1, attempts)):
        try:
            _attempt(url, part, limit, timeout, progress)
            last = None
            break
        except TooLarge:
            discard()
            raise
        except DownloadError as exc:
            last = exc
    if last is not None:
        raise DownloadError(f"{last} (the part file {part.name} is kept: pull again to resume)")
    got_size = part.stat().st_size
    if size is not None and got_size != size:
        discard()
        raise DownloadError(f"{url}: {got_size} bytes, the catalogue says {size}")
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256.lower():
        discard()
        raise DownloadError(f"{url}: sha256 {digest} is not the expected {sha256.lower()}")
    os.replace(part, dest)
    validator_file.unlink(missing_ok=True)
    sidecar.write_text(f"{digest}  {dest.name}\n", encoding="utf-8")
    return digest
