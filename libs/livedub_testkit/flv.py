"""FLV at the tag level, for inputs no encoder would write on purpose: corrupt payloads, a codec
configuration that changes mid-stream, audio-only or video-only stretches.

An FLV file is a 9-byte header, then tags, each followed by its 4-byte size: type (8 audio,
9 video, 18 script), 24-bit data size, 24+8-bit millisecond timestamp, stream id 0, data. The
first byte of an audio tag's data says the format (10 = AAC), the second whether it is the AAC
sequence header (0, the AudioSpecificConfig) or a frame (1); a video tag's first byte holds the
frame type (1 = keyframe) and codec (7 = H.264), the second whether it is the AVC sequence
header (0) or a NAL unit (1). Publish a written file with ``ffmpeg -re -i f.flv -c copy -f flv``
(:func:`livedub_testkit.analysis.publish`): ffmpeg passes a mid-stream sequence header on.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = ["Tag", "read_tags", "write_flv", "to_flv", "shifted", "is_config", "corrupt"]

AUDIO, VIDEO, SCRIPT = 8, 9, 18


@dataclass(frozen=True)
class Tag:
    type: int
    ms: int
    data: bytes

    @property
    def keyframe(self) -> bool:
        return self.type == VIDEO and self.data[0] >> 4 == 1


def is_config(tag: Tag) -> bool:
    """An AAC or AVC sequence header (codec configuration), not media."""
    return tag.type in (AUDIO, VIDEO) and len(tag.data) > 1 and tag.data[1] == 0


def read_tags(path) -> list[Tag]:
    raw = Path(path).read_bytes()
    if raw[:3] != b"FLV":
        raise ValueError(f"{path}: not an FLV file")
    pos = struct.unpack(">I", raw[5:9])[0] + 4
    tags = []
    while pos + 11 <= len(raw):
        kind = raw[pos] & 0x1F
        size = int.from_bytes(raw[pos + 1:pos + 4], "big")
        ms = int.from_bytes(raw[pos + 4:pos + 7], "big") | raw[pos + 7] << 24
        data = raw[pos + 11:pos + 11 + size]
        if len(data) < size:
            break
        tags.append(Tag(kind, ms, data))
        pos += 11 + size + 4
    return tags


def write_flv(path, tags: list[Tag]) -> Path:
    """Write `tags` (script tags dropped: their duration would be wrong) as an FLV file."""
    kinds = {t.type for t in tags}
    flags = (4 if AUDIO in kinds else 0) | (1 if VIDEO in kinds else 0)
    out = bytearray(b"FLV\x01" + bytes([flags]) + struct.pack(">I", 9) + b"\x00\x00\x00\x00")
    for t in tags:
        if t.type == SCRIPT:
            continue
        ms = t.ms & 0xFFFFFFFF
        head = bytes([t.type]) + len(t.data).to_bytes(3, "big") + (ms & 0xFFFFFF).to_bytes(3, "big")
        out += head + bytes([ms >> 24]) + b"\x00\x00\x00" + t.data
        out += struct.pack(">I", 11 + len(t.data))
    Path(path).write_bytes(bytes(out))
    return Path(path)


def to_flv(src, dst, *extra: str) -> Path:
    """Remux (``-c copy``) or, with `extra` ffmpeg output options, transcode `src` into FLV."""
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-c", "copy", *extra,
                    "-f", "flv", str(dst)], check=True)
    return Path(dst)


def shifted(tags: list[Tag], ms: int) -> list[Tag]:
    return [replace(t, ms=t.ms + ms) for t in tags]


def corrupt(tags: list[Tag], *, every: int, start_ms: int = 0, seed: int = 1) -> tuple[list[Tag], int]:
    """Flip a few bytes inside the payload of every `every`-th media tag from `start_ms` on
    (never a sequence header, never the tag's own header bytes); returns the tags and how many
    were damaged."""
    rng = np.random.default_rng(seed)
    out, n, damaged = [], 0, 0
    for t in tags:
        if t.type in (AUDIO, VIDEO) and not is_config(t) and t.ms >= start_ms:
            n += 1
            body = 2 if t.type == AUDIO else 5  # after the FLV audio/AVC packet header
            if n % every == 0 and len(t.data) > body + 4:
                data = bytearray(t.data)
                for i in rng.integers(body, len(data), size=max(1, len(data) // 50)):
                    data[i] ^= 0xFF
                t = replace(t, data=bytes(data))
                damaged += 1
        out.append(t)
    return out, damaged
