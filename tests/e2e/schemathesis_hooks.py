"""Schemathesis hooks for the API (loaded by the CLI through ``SCHEMATHESIS_HOOKS``).

The upload's ``file`` is ``format: binary`` whose first bytes must be a recognised video container (the schema says
so in words: JSON Schema cannot state a file signature). Schemathesis's own ``binary`` values are images, archives
and random bytes, which the API rightly refuses with 415; these are bytes that begin like each container the API
accepts, with an arbitrary rest, so that schema-valid data is what the API documents as acceptable.
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

CONTAINER_HEADS = (
    b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",  # mp4/mov (ISO BMFF)
    b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01",  # matroska
    b"\x1a\x45\xdf\xa3\x9f\x42\x82\x84webm",  # webm
    b"RIFF\x24\x00\x00\x00AVI LIST",  # avi
    b"FLV\x01\x05\x00\x00\x00\x09",  # flv
    b"OggS\x00\x02",  # ogg
    b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c",  # asf/wmv
    b"\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01",  # mpeg-ps
)

schemathesis.openapi.format(
    "binary", st.builds(lambda head, rest: head + rest, st.sampled_from(CONTAINER_HEADS), st.binary(max_size=2048)))
