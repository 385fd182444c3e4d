"""The VadCLIP feature layout (spec A): file names, path remapping, list files, labels, feature files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.benchmark.protocol import (
    LabelEncoder,
    feature_file_name,
    feature_length,
    load_features,
    parse_feature_file,
    read_feature_list,
    resolve_feature_path,
    write_feature_list,
)
from model.config import load_preset
from model.exceptions import DataError

UCF_PREFIX = "/data/VAD/UCFCrime/"


# --- lists and paths -------------------------------------------------------------------------------------------


def test_features_root_replaces_the_authors_prefix(tmp_path: Path) -> None:
    listed = "/data/VAD/UCFCrime/UCFClipFeatures/Abuse/Abuse001_x264__0.npy"
    assert resolve_feature_path(listed, tmp_path, UCF_PREFIX) == tmp_path / "UCFClipFeatures/Abuse/Abuse001_x264__0.npy"
    assert resolve_feature_path(listed, tmp_path, UCF_PREFIX.rstrip("/")) == resolve_feature_path(
        listed, tmp_path, UCF_PREFIX)
    assert resolve_feature_path("Abuse/x__0.npy", tmp_path, UCF_PREFIX) == tmp_path / "Abuse/x__0.npy"
    assert resolve_feature_path(listed, None, UCF_PREFIX) == Path(listed)


def test_an_absolute_path_outside_the_prefix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--list-prefix"):
        resolve_feature_path("/elsewhere/Abuse001_x264__0.npy", tmp_path, UCF_PREFIX)


def test_read_feature_list(tmp_path: Path) -> None:
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\n/data/VAD/UCFCrime/UCFClipFeatures/Abuse/Abuse001_x264__7.npy,Abuse\n"
                   "/data/VAD/UCFCrime/UCFClipFeatures/Training_Normal_Videos_Anomaly/Normal_Videos001_x264__0.npy,"
                   "Normal\n")
    entries = read_feature_list(csv, tmp_path / "root", UCF_PREFIX)
    assert [(e.video, e.crop, e.label) for e in entries] == [("Abuse001_x264", 7, "Abuse"),
                                                             ("Normal_Videos001_x264", 0, "Normal")]
    assert entries[0].path == tmp_path / "root/UCFClipFeatures/Abuse/Abuse001_x264__7.npy"


@pytest.mark.parametrize(("text", "message"), [("file,label\na__0.npy,A\n", "header"),
                                                ("path,label\nvideo.npy,A\n", "__<crop>.npy"),
                                                ("path,label\n", "no feature files")])
def test_malformed_lists_are_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "l.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        read_feature_list(tmp_path / "l.csv")
    with pytest.raises(DataError, match="not found"):
        read_feature_list(tmp_path / "missing.csv")


# --- labels ----------------------------------------------------------------------------------------------------


def test_ucf_labels_are_one_hot() -> None:
    encoder = LabelEncoder(load_preset("ucf"))
    assert np.flatnonzero(encoder("Normal")).tolist() == [0]
    assert np.flatnonzero(encoder("RoadAccidents")).tolist() == [8]
    assert encoder("Vandalism").shape == (14,) and encoder.is_normal("Normal") and not encoder.is_normal("Abuse")


def test_xd_labels_are_multi_hot() -> None:
    encoder = LabelEncoder(load_preset("xd"))
    assert np.flatnonzero(encoder("A")).tolist() == [0]
    assert np.flatnonzero(encoder("B1-B2-0")).tolist() == [1, 2]
    assert np.flatnonzero(encoder("G-B2-B6")).tolist() == [2, 5, 6]
    assert np.flatnonzero(encoder("B1")).tolist() == [1] and np.flatnonzero(encoder("G")).tolist() == [6]
    assert encoder.codes("B4-0-0") == ["B4"]


@pytest.mark.parametrize(("preset", "label"), [("ucf", "Riot"), ("ucf", "abuse"), ("xd", "B3-0-0"), ("xd", "0")])
def test_unknown_labels_are_refused(preset: str, label: str) -> None:
    with pytest.raises(DataError, match="unknown label"):
        LabelEncoder(load_preset(preset))(label)


# --- feature files ---------------------------------------------------------------------------------------------


def test_load_features_checks_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "ok.npy", np.ones((5, 8), np.float64))
    assert load_features(tmp_path / "ok.npy", 8).dtype == np.float32
    assert feature_length(tmp_path / "ok.npy", 8) == 5
    with pytest.raises(DataError, match="--features-root"):
        load_features(tmp_path / "missing.npy", 8)
    with pytest.raises(DataError, match=r"expected \[n >= 1, 16\]"):
        load_features(tmp_path / "ok.npy", 16)
    with pytest.raises(DataError, match=r"expected \[n >= 1, 16\]"):
        feature_length(tmp_path / "ok.npy", 16)
    np.save(tmp_path / "nan.npy", np.full((2, 8), np.nan, np.float32))
    with pytest.raises(DataError, match="finite"):
        load_features(tmp_path / "nan.npy", 8)
    np.save(tmp_path / "flat.npy", np.ones(8, np.float32))
    with pytest.raises(DataError, match="shape"):
        load_features(tmp_path / "flat.npy", 8)


def test_file_names_round_trip() -> None:
    assert feature_file_name("Abuse001_x264", 7) == "Abuse001_x264__7.npy"
    assert parse_feature_file("/d/Abuse/Abuse001_x264__7.npy") == ("Abuse001_x264", 7)
    assert parse_feature_file("C:\\d\\x__y__0.npy") == ("x__y", 0)
    assert parse_feature_file("video.npy") is None


def test_written_lists_read_back(tmp_path: Path) -> None:
    write_feature_list(tmp_path / "list.csv", [("a/v__0.npy", "Abuse"), ("a/w__1.npy", "Normal")])
    assert tmp_path.joinpath("list.csv").read_text() == "path,label\na/v__0.npy,Abuse\na/w__1.npy,Normal\n"
    entries = read_feature_list(tmp_path / "list.csv", tmp_path, "")
    assert [(e.path, e.video, e.crop) for e in entries] == [(tmp_path / "a/v__0.npy", "v", 0),
                                                             (tmp_path / "a/w__1.npy", "w", 1)]
    assert [p.name for p in tmp_path.iterdir()] == ["list.csv"]  # no temporary file left
