"""Evidence in the storage: keys, objects by key (local backend), the retention sweep, deletion with its source."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from pathlib import Path

import pytest

from vad.evidence import EvidenceMeta, evidence_key, is_event_id
from vad.exceptions import StorageError
from vad.keys import Keys
from vad.storage import LocalStorage
from vad.storage.evidence import (
    delete_source_evidence,
    note_evidence,
    read_meta,
    source_deleted,
    stored_evidence,
    sweep_evidence,
)


def _evidence(storage: LocalStorage, tmp_path: Path, size: int, age_s: float = 0.0) -> str:
    """An event with a clip of ``size`` bytes and its meta.json, written ``age_s`` seconds ago."""
    event_id = str(uuid.uuid4())
    clip = tmp_path / f"{event_id}.mp4"
    clip.write_bytes(os.urandom(size))
    storage.put_file(evidence_key(event_id, "clip.mp4"), clip, "video/mp4")
    meta = tmp_path / f"{event_id}.json"
    meta.write_text(EvidenceMeta(event_id=event_id, source="job", source_id="j", start_s=0, end_s=1,
                                 sizes={"clip.mp4": size}).model_dump_json())
    storage.put_file(evidence_key(event_id, "meta.json"), meta, "application/json")
    when = time.time() - age_s
    for name in ("clip.mp4", "meta.json"):
        os.utime(storage.root / evidence_key(event_id, name), (when, when))
    return event_id


def test_keys_are_made_only_of_event_ids_and_known_names() -> None:
    event_id = str(uuid.uuid4())
    assert is_event_id(event_id) and evidence_key(event_id, "clip.mp4") == f"evidence/{event_id}/clip.mp4"
    for bad_id, name in (("../../etc", "clip.mp4"), (event_id.upper(), "clip.mp4"), (event_id, "video")):
        with pytest.raises(ValueError):
            evidence_key(bad_id, name)


def test_local_objects_by_key_ranges_listing_and_deletion(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    event_id = _evidence(storage, tmp_path, 3000)
    key = evidence_key(event_id, "clip.mp4")
    data = (storage.root / key).read_bytes()
    assert storage.object_size(key) == 3000 and storage.object_size("evidence/none/clip.mp4") is None
    assert b"".join(storage.read_range(key, 100, 2099)) == data[100:2100]
    assert b"".join(storage.read_range(key, 2990, 2999)) == data[2990:]
    assert read_meta(storage, event_id) is not None and read_meta(storage, str(uuid.uuid4())) is None
    assert [o.key for o in storage.list_objects("evidence/")] == sorted([key, evidence_key(event_id, "meta.json")])
    assert list(storage.uploads()) == []  # the evidence folder is no upload: the upload sweep never takes it
    with pytest.raises(StorageError):
        storage.object_size("../outside")
    storage.delete_objects([key, evidence_key(event_id, "meta.json")])
    assert not (storage.root / "evidence" / event_id).exists()


def test_the_sweep_deletes_by_age_then_the_oldest_beyond_the_size_cap(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    old = _evidence(storage, tmp_path, 1000, age_s=7200)
    older_kept = _evidence(storage, tmp_path, 1000, age_s=600)
    middle = _evidence(storage, tmp_path, 1000, age_s=300)
    newest = _evidence(storage, tmp_path, 1000, age_s=10)
    assert [s.event_id for s in stored_evidence(storage)] == [old, older_kept, middle, newest]
    assert sweep_evidence(storage, retention_s=3600, max_bytes=0) == [old]
    cap = sum(s.size for s in stored_evidence(storage) if s.event_id in (middle, newest))  # room for those two
    assert sweep_evidence(storage, retention_s=3600, max_bytes=cap) == [older_kept]
    assert [s.event_id for s in stored_evidence(storage)] == [middle, newest]


def test_deleting_a_source_deletes_its_evidence_and_leaves_a_tombstone(tmp_path: Path, live_redis) -> None:
    keys = Keys(f"test-{secrets.token_hex(4)}:")
    storage = LocalStorage(tmp_path / "store")
    mine, other = _evidence(storage, tmp_path, 100), _evidence(storage, tmp_path, 100)
    try:
        note_evidence(live_redis, keys, "job", "job1", mine, 60)
        note_evidence(live_redis, keys, "job", "job2", other, 60)
        assert not source_deleted(live_redis, keys, "job", "job1")
        assert delete_source_evidence(live_redis, keys, storage, "job", "job1") == 1
        assert read_meta(storage, mine) is None and read_meta(storage, other) is not None
        assert source_deleted(live_redis, keys, "job", "job1") and not source_deleted(live_redis, keys, "job", "job2")
    finally:
        found = list(live_redis.scan_iter(f"{keys.prefix}*"))
        if found:
            live_redis.delete(*found)
