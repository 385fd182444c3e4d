"""``model.exceptions.first_line``: the one way a library's error becomes a one-line reason."""

from __future__ import annotations

from model.exceptions import first_line


def test_first_line_keeps_one_line_within_the_limit() -> None:
    assert first_line(RuntimeError("cannot decode\n  at frame 3\n  in libavcodec")) == "cannot decode"
    assert first_line(RuntimeError("x" * 500)) == "x" * 200 and len(first_line(RuntimeError("y" * 500), 300)) == 300
    assert first_line(ValueError("  \n")) == "ValueError"  # nothing to say: the type says it


def test_an_os_error_gives_its_reason_without_errno_or_file_name() -> None:
    assert first_line(FileNotFoundError(2, "No such file or directory", "/srv/uploads/job1/video")) == \
        "No such file or directory"
    assert first_line(ConnectionRefusedError(111, "Connection refused")) == "Connection refused"
