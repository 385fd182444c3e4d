"""Recognise a video container from its first bytes (never from the file name or the client's type)."""

from __future__ import annotations

SNIFF_BYTES = 4096

# ISO base media (MP4, MOV, 3GP, M4V): a box header at offset 4.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")


def sniff_container(head: bytes) -> str | None:
    """The container name of a file starting with ``head`` (at least 4 KiB when available), or ``None``.

    Recognised: mp4/mov (ISO BMFF), matroska/webm, avi, mpeg-ts, mpeg-ps, flv, ogg, asf/wmv.
    """
    if len(head) >= 8 and head[4:8] in _ISO_BOXES:
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm" if b"webm" in head[:64] else "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg-ps"
    if _looks_like_transport_stream(head):
        return "mpeg-ts"
    return None


def _looks_like_transport_stream(head: bytes) -> bool:
    for packet in (188, 192):  # plain TS and M2TS (4-byte timestamp prefix)
        offset = 0 if packet == 188 else 4
        positions = range(offset, min(len(head), packet * 5), packet)
        if len(positions) >= 3 and all(head[p] == 0x47 for p in positions):
            return True
    return False
