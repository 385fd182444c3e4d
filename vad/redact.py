"""Messages a user reads (a job's error, a result's warnings) carry no absolute path of the server.

Decoders quote the file they were given (the stored upload, ``<storage>/<job id>/video``) and sometimes the
source paths of their own build (``/github/workspace/src/video/video_reader.cc:486``); Python's errors quote
paths too. :func:`scrub_paths` names the paths it is told about as the user knows them (the upload by its file
name) and shortens every other absolute path to its last part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

_PART = r"[^\s/'\"`:;,()\[\]{}<>]+"
ABSOLUTE_PATH = re.compile(rf"(?<![\w.:/~-])(?:/{_PART}){{2,}}/?")
"""An absolute POSIX path of two parts or more, not inside a URL or a relative path; a colon ends it
(``video_reader.cc:486``)."""


def scrub_paths(text: str, known: Mapping[str | Path, str] | None = None) -> str:
    """``text`` with the paths in ``known`` replaced by their names, then any other absolute path by its last part.

    Args:
        text: A message meant for a user.
        known: Paths to name in a particular way, e.g. ``{upload path: "holiday.mp4"}``; the longest match wins.

    Returns:
        The message without absolute paths of this machine.
    """
    for path, name in sorted((known or {}).items(), key=lambda item: -len(str(item[0]))):
        if str(path) not in ("", "."):  # a record without a path (Path("") is ".") names nothing
            text = text.replace(str(path), name)
    return ABSOLUTE_PATH.sub(lambda match: match.group().rstrip("/").rsplit("/", 1)[-1], text)
