"""The MQTT topics, payloads, Home Assistant discovery configs, the score rate limit and the MQTT settings, without a
broker (tests/integration/test_mqtt.py runs them against Mosquitto)."""

from __future__ import annotations

import json
import ssl

import pytest
from pydantic import ValidationError

from workers.mqtt.messages import RateLimit, Topics, discovery_configs, event_message, score_message
from workers.settings import WorkerSettings

EVENT = {"id": "4f1c", "class": "fighting", "class_prob": 0.8, "start_s": 12.5, "end_s": 15.0, "peak_score": 0.93,
         "mean_score": 0.71, "first_index": 20, "last_index": 24, "opened_at": 1700000010.0,
         "closed_at": 1700000016.0}


def test_an_event_message_carries_its_ids_stream_class_scores_and_times() -> None:
    fields = {"kind": "close", "event": json.dumps(EVENT), "reason": "scores fell", "at": "1700000016.5",
              "token": "3"}
    message = event_message("cam1", "Front door", "1700000016500-0", fields)
    assert message["type"] == "close" and message["event_id"] == "4f1c" and message["entry_id"] == "1700000016500-0"
    assert (message["stream_id"], message["name"], message["class"]) == ("cam1", "Front door", "fighting")
    assert (message["peak_score"], message["mean_score"]) == (0.93, 0.71)
    assert (message["opened_at"], message["closed_at"], message["at"]) == (1700000010.0, 1700000016.0, 1700000016.5)
    assert message["reason"] == "scores fell" and "id" not in message and "token" not in message
    opened = event_message("cam1", "", "1-0", {"kind": "open", "event": json.dumps({**EVENT, "end_s": None,
                                                                                     "closed_at": None}),
                                                "reason": "", "at": "1"})
    assert opened["type"] == "open" and opened["reason"] is None and opened["closed_at"] is None
    assert json.loads(json.dumps(message)) == message  # JSON as it is


def test_fields_a_later_event_record_adds_are_passed_on() -> None:
    fields = {"kind": "open", "event": json.dumps({**EVENT, "start_at": 1700000009.5}), "at": "1"}
    assert event_message("cam1", "x", "1-0", fields)["start_at"] == 1700000009.5


def test_the_score_message() -> None:
    assert score_message("cam1", 0.1234567, 1700000000.25, 0.31234) == {
        "stream_id": "cam1", "score": 0.123457, "at": 1700000000.25, "lag_s": 0.312}
    assert score_message("cam1", 0.5, None, None)["lag_s"] is None


def test_topics_under_the_prefix() -> None:
    topics = Topics("site/vad", "homeassistant")
    assert topics.status == "site/vad/status"
    assert topics.events("cam1") == "site/vad/streams/cam1/events"
    assert topics.retained("cam1") == ["site/vad/streams/cam1/availability", "site/vad/streams/cam1/anomaly",
                                       "site/vad/streams/cam1/score"]
    assert topics.discovery("cam1") == {"anomaly": "homeassistant/binary_sensor/vad_cam1/anomaly/config",
                                        "score": "homeassistant/sensor/vad_cam1/score/config"}
    assert Topics("vad", None).discovery("cam1") == {}


def test_discovery_configs_one_device_two_entities_available_while_bridge_and_stream_are() -> None:
    topics = Topics("vad", "homeassistant")
    configs = discovery_configs(topics, "cam1", "Front door")
    anomaly = configs["homeassistant/binary_sensor/vad_cam1/anomaly/config"]
    score = configs["homeassistant/sensor/vad_cam1/score/config"]
    for config in (anomaly, score):
        assert config["device"] == {"identifiers": ["dsanet_vad_cam1"], "name": "Front door",
                                    "manufacturer": "dsanet-vad", "model": "DSANet video anomaly detection"}
        assert config["availability"] == [{"topic": "vad/status"}, {"topic": "vad/streams/cam1/availability"}]
        assert (config["availability_mode"], config["payload_available"], config["payload_not_available"]) == (
            "all", "online", "offline")
    assert (anomaly["state_topic"], anomaly["device_class"], anomaly["payload_on"], anomaly["payload_off"]) == (
        "vad/streams/cam1/anomaly", "problem", "ON", "OFF")
    assert anomaly["unique_id"] == "dsanet_vad_cam1_anomaly" and score["unique_id"] == "dsanet_vad_cam1_score"
    assert score["state_topic"] == "vad/streams/cam1/score" and score["state_class"] == "measurement"
    assert discovery_configs(topics, "cam1", "")["homeassistant/sensor/vad_cam1/score/config"]["device"]["name"] \
        == "cam1"  # an unnamed stream's device is named by its id
    assert discovery_configs(Topics("vad", None), "cam1", "x") == {}


def test_the_rate_limit_lets_one_message_per_interval_per_stream() -> None:
    now = [100.0]
    limit = RateLimit(5.0, clock=lambda: now[0])
    assert limit.ready("a")
    limit.sent("a")
    assert not limit.ready("a") and limit.ready("b")  # per stream
    now[0] = 104.9
    assert not limit.ready("a")
    now[0] = 105.0
    assert limit.ready("a")
    limit.sent("a")
    limit.forget("a")
    assert limit.ready("a")


def test_mqtt_settings_off_by_default_and_checked() -> None:
    assert WorkerSettings().mqtt_host is None
    assert WorkerSettings(mqtt_host=" ").mqtt_host is None  # VAD_MQTT_HOST= (empty) is off too
    assert WorkerSettings(mqtt_discovery_prefix="").mqtt_discovery_prefix is None
    for bad in ("", "vad/", "/vad", "vad/#", "vad/+/x", "a b"):
        with pytest.raises(ValidationError, match="topic prefix"):
            WorkerSettings(mqtt_topic_prefix=bad)
    with pytest.raises(ValidationError, match="VAD_MQTT_TLS=true"):
        WorkerSettings(mqtt_host="broker", mqtt_ca_file="/etc/ssl/ca.pem")
    with pytest.raises(ValidationError, match="VAD_MQTT_CERT_FILE"):
        WorkerSettings(mqtt_host="broker", mqtt_tls=True, mqtt_key_file="/k.pem")
    assert "s3cret" not in repr(WorkerSettings(mqtt_host="b", mqtt_username="u", mqtt_password="s3cret"))


def test_the_client_gets_credentials_tls_and_the_offline_will() -> None:
    from workers.mqtt.bridge import make_client

    client = make_client(WorkerSettings(mqtt_host="b", mqtt_username="u", mqtt_password="p", mqtt_tls=True,
                                        mqtt_topic_prefix="site"), "dsanet-vad-w1")
    assert (client.username, client.password) == ("u", "p")
    context = client._ssl_context  # paho keeps the context tls_set built
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert client._will_topic == b"site/status" and client._will_payload == b"offline" and client._will_retain
    insecure = make_client(WorkerSettings(mqtt_host="b", mqtt_tls=True, mqtt_tls_insecure=True), "x")
    assert insecure._ssl_context is not None and not insecure._ssl_context.check_hostname
    plain = make_client(WorkerSettings(mqtt_host="b"), "x")
    assert plain._ssl_context is None and plain.username is None
