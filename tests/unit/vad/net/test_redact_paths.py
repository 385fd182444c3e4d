"""Messages a user sees carry no path of the server: the upload is named by its display name, other paths by
their last part."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vad.net.redact import scrub_paths

PATH_TOKEN = re.compile(r"/[\w.-]+/")
UPLOAD = "/srv/vad/data/uploads/3f9c2a7d41b64e0e9a1c/video"


def test_the_upload_path_becomes_its_display_name() -> None:
    text = f"the decord backend failed on 'video': cannot open it: Error reading {UPLOAD}..."
    scrubbed = scrub_paths(text, {UPLOAD: "holiday.mp4"})
    assert scrubbed == "the decord backend failed on 'video': cannot open it: Error reading holiday.mp4..."
    missing = scrub_paths(f"[Errno 2] No such file: '{UPLOAD}'", {Path(UPLOAD): "a b.mp4"})
    assert missing == "[Errno 2] No such file: 'a b.mp4'"


def test_other_absolute_paths_keep_only_their_last_part() -> None:
    decord = ("cannot decode frames: [02:07:35] /github/workspace/src/runtime/ndarray.cc:171: Check failed: "
              "from_size == to_size (1536 vs. 768)")
    assert scrub_paths(decord) == ("cannot decode frames: [02:07:35] ndarray.cc:171: Check failed: "
                                   "from_size == to_size (1536 vs. 768)")
    assert scrub_paths(f"FileNotFoundError: '{UPLOAD}'") == "FileNotFoundError: 'video'"
    assert scrub_paths("under /tmp/pytest-of-root/ now") == "under pytest-of-root now"
    nested = "paths /a/b/c.txt and /a/b/c.txt/d, (/opt/x/y)"
    assert not PATH_TOKEN.search(scrub_paths(nested)) and scrub_paths(nested) == "paths c.txt and d, (y)"


def test_the_longest_known_path_wins() -> None:
    known = {"/srv/up/job": "the job folder", "/srv/up/job/video": "holiday.mp4"}
    assert scrub_paths("open /srv/up/job/video and /srv/up/job", known) == "open holiday.mp4 and the job folder"
    assert scrub_paths("a. b", {"": "x", Path(""): "y"}) == "a. b"  # a record without a path names nothing


@pytest.mark.parametrize("text", [
    "Re-encode it (e.g. ffmpeg -i in.ext -c:v libx264 out.mp4)",
    "a frame rate of 30000/1001 and/or 25 fps",
    "see https://hooks.example.com/a/b/c and ftp://host/x/y",
    "relative/dir/file.mp4 and ./local/dir/x.mp4",
    "cannot use 'holiday.mp4' as a video: it is audio-only. Upload a file with a video track",
    "",
])
def test_text_without_absolute_paths_is_unchanged(text: str) -> None:
    assert scrub_paths(text) == text
