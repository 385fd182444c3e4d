"""The threshold in force of a stream through the API, against the machine's Redis: POST .../calibrate on the
stream's timeline (figures in the record; 409 when the window holds too few scores; 422 on bad bodies), and the
verdict rule (a false alarm raises the threshold above its peak, but below the lowest confirmed true alert's)."""

from __future__ import annotations

import json
import time
import uuid

from tests.integration.service.test_streams_api import A, B, create, owner_writer


def scored_stretch(writer, n: int = 600) -> tuple[float, float]:
    """``n`` snippets of 0.32 s: low scores with a spike to 0.7 every 20 s; the unix times around their writes."""
    since = time.time()
    for k in range(n):
        score = 0.7 if k % 62 == 30 else 0.1 + 0.1 * ((k * 7919) % 13) / 13
        writer.score({"last_score": score}, {"index": k, "start_s": round(k * 0.32, 6),
                                             "end_s": round((k + 1) * 0.32, 6), "score": score,
                                             "class_probs": json.dumps([1 - score, score]), "at": time.time()})
    return since - 1, time.time() + 1


def close_event(writer, peak: float) -> str:
    event_id = str(uuid.uuid4())
    event = {"id": event_id, "class": "x", "class_prob": 0.6, "start_s": 1.0, "end_s": 2.0, "peak_score": peak,
             "mean_score": peak - 0.05, "first_index": 3, "last_index": 6, "opened_at": time.time(),
             "closed_at": time.time()}
    assert writer.event("open", {**event, "end_s": None, "closed_at": None}, "")
    assert writer.event("close", event, "scores fell")
    return event_id


def test_calibrate_a_stream_on_its_timeline(app_client) -> None:
    stream = create(app_client, threshold=0.5)
    writer = owner_writer(app_client, stream["id"])
    since, until = scored_stretch(writer)
    url = f"/v1/streams/{stream['id']}/calibrate"
    body = {"normal_since": since - 120, "normal_until": until, "target_false_alarms_per_hour": 1}
    answer = app_client.post(url, json=body, headers=A)
    assert answer.status_code == 200, answer.text
    alert = answer.json()["alert"]
    # 192 s of footage allows no alarm at 1/h: above every spike
    assert alert["source"] == "calibrated" and 0.7 < alert["threshold"] < 1 and alert["at"] > since
    assert alert["calibration"]["snippets"] == 600 and alert["calibration"]["target_false_alarms_per_hour"] == 1
    assert app_client.get(f"/v1/streams/{stream['id']}", headers=A).json()["alert"] == alert


def test_verdicts_move_a_streams_threshold_by_the_rule(app_client) -> None:
    stream = create(app_client, threshold=0.5)
    writer = owner_writer(app_client, stream["id"])
    true_id, false_id, low_id = close_event(writer, 0.9), close_event(writer, 0.97), close_event(writer, 0.72)
    assert app_client.put(f"/v1/events/{true_id}/verdict", json={"verdict": "true_alert"}, headers=A).status_code == 200
    assert app_client.put(f"/v1/events/{false_id}/verdict", json={"verdict": "false_alarm"}, headers=A
                          ).status_code == 200
    moved = app_client.get(f"/v1/streams/{stream['id']}", headers=A).json()["alert"]
    # just above 0.97 would silence the confirmed 0.9: just below 0.9 instead
    assert moved["source"] == "verdict" and 0.89 < moved["threshold"] < 0.9 and false_id in moved["reason"]
    app_client.put(f"/v1/events/{low_id}/verdict", json={"verdict": "false_alarm"}, headers=A)
    assert app_client.get(f"/v1/streams/{stream['id']}", headers=A).json()["alert"] == moved  # never lowered


def test_calibrate_refuses_windows_without_scores_and_bad_bodies(app_client) -> None:
    stream = create(app_client)
    url = f"/v1/streams/{stream['id']}/calibrate"
    empty = app_client.post(url, json={"normal_since": 1000, "normal_until": 2000,
                                       "target_false_alarms_per_hour": 1}, headers=A)
    assert empty.status_code == 409 and empty.json()["code"] == "calibration_unavailable"
    assert "VAD_STREAM_TIMELINE_RETENTION_S" in empty.json()["detail"]
    short = app_client.post(url, json={"normal_since": 1000, "normal_until": 1100,
                                       "target_false_alarms_per_hour": 1}, headers=A)
    assert short.status_code == 409 and "at least 120 s" in short.json()["detail"]  # a rule across fields: not 422
    for bad in ({"normal_since": 1000, "normal_until": 2000, "target_false_alarms_per_hour": 0},
                {"normal_since": 1000, "normal_until": 2000},
                {"normal_since": 1000, "normal_until": 2000, "target_false_alarms_per_hour": 1, "floor": 1.0}):
        assert app_client.post(url, json=bad, headers=A).status_code == 422, bad
    other = app_client.post(url, json={"normal_since": 1000, "normal_until": 2000,
                                       "target_false_alarms_per_hour": 1}, headers=B)
    assert other.status_code == 404
