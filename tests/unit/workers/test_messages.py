"""Errors and warnings name a video by the name its user knows (the upload's file name, not the stored ``video``)
and carry no absolute path of the machine (the upload folder, the decoder's build paths)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import tiny_bundle
from tests.unit.workers.media import cut
from vad.jobstate import JobRecord
from workers.analyzer import Analyzer
from workers.exceptions import VideoError
from workers.result import video_info
from workers.runtime.jobs import failure_reason
from workers.settings import WorkerSettings
from workers.synthetic import SyntheticVideo, make_audio_only
from workers.video import available_backends

pytestmark = pytest.mark.timeout(120)
PATH_TOKEN = re.compile(r"/[\w.-]+/")


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(tiny_bundle("ucf", seed=1), WorkerSettings(device="cpu", batch_size=3, decode_timeout_s=60))


def _stored(tmp_path: Path, data: bytes) -> Path:
    """An upload as the service stores it: ``<storage>/<job id>/video``."""
    path = tmp_path / "uploads" / "3f9c2a7d41b64e0e" / "video"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


def _assert_clean(text: str, tmp_path: Path) -> None:
    assert str(tmp_path) not in text and "uploads" not in text and not PATH_TOKEN.search(text), text


@pytest.mark.parametrize("kind", ["text", "audio"])
def test_errors_name_the_upload(analyzer: Analyzer, tmp_path: Path, kind: str) -> None:
    data = b"not a video\n" * 100 if kind == "text" else make_audio_only(tmp_path / "audio.mp4").read_bytes()
    path = _stored(tmp_path, data)
    with pytest.raises(VideoError) as caught:
        analyzer.analyze(path, filename="holiday.mp4")
    assert str(caught.value).startswith("cannot use 'holiday.mp4' as a video: ")
    _assert_clean(str(caught.value), tmp_path)


def test_without_a_display_name_errors_name_the_file_given(analyzer: Analyzer, tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_text("not a video\n" * 100)
    with pytest.raises(VideoError, match=r"cannot use 'clip\.mp4' as a video"):
        analyzer.analyze(path)


@pytest.fixture
def cut_upload(tmp_path: Path, synth: Callable[..., SyntheticVideo]) -> Path:
    """The first half of an MP4 whose index comes first, stored as an upload: it decodes, with warnings."""
    video = synth("faststart.mp4", frames=100, faststart=True, seed=5)
    return _stored(tmp_path, cut(video.path, tmp_path / "half.mp4", video.path.stat().st_size // 2).read_bytes())


def test_warnings_of_a_damaged_upload_name_it_and_no_path(analyzer: Analyzer, tmp_path: Path,
                                                          cut_upload: Path) -> None:
    result = analyzer.analyze(cut_upload, filename="holiday.mp4")
    warnings = result.video.warnings
    assert result.video.filename == "holiday.mp4" and any("claims 100 frames" in w for w in warnings)
    for warning in warnings:
        _assert_clean(warning, tmp_path)
        assert "'video'" not in warning
    for fallback in [w for w in warnings if " failed, decoded with " in w]:  # a backend gave up, and says why
        assert "'holiday.mp4'" in fallback


def test_warnings_quote_no_path_of_the_decoder(analyzer: Analyzer, tmp_path: Path, cut_upload: Path) -> None:
    feats = analyzer.extractor.extract(cut_upload, name="holiday.mp4")
    reason = f"the decord backend failed on 'holiday.mp4': Error reading {cut_upload}... [02:07:35] " \
             "/github/workspace/src/video/video_reader.cc:486: Error: av_read_frame failed"
    damaged = dataclasses.replace(feats, report=dataclasses.replace(feats.report, fallback_reason=reason))
    warning = next(w for w in video_info(damaged, "holiday.mp4", None).warnings if "decoded with" in w)
    assert "Error reading holiday.mp4..." in warning and "video_reader.cc:486" in warning
    _assert_clean(warning, tmp_path)


@pytest.mark.skipif("decord" not in available_backends(), reason="decord is not installed")
def test_a_decoder_failure_names_the_upload_and_keeps_no_path(analyzer: Analyzer, tmp_path: Path,
                                                              cut_upload: Path) -> None:
    with pytest.raises(VideoError) as caught:  # decord alone cannot index the cut file
        analyzer.analyze(cut_upload, filename="holiday.mp4", decode_backend="decord")
    message = str(caught.value)
    assert message.startswith("cannot use 'holiday.mp4' as a video: the decord backend failed on 'holiday.mp4'")
    record = JobRecord(id="j", filename="holiday.mp4", video_path=str(cut_upload))
    reason = failure_reason(VideoError, caught.value, SimpleNamespace(timeout=60), record)
    assert reason.startswith("cannot use 'holiday.mp4' as a video") and "video_reader.cc" in reason
    _assert_clean(reason, tmp_path)
