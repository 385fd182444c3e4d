"""What the MQTT bridge publishes: topic names, JSON payloads and Home Assistant discovery configs (no IO here).

Topics, under ``VAD_MQTT_TOPIC_PREFIX`` (``vad``)::

    vad/status                           online | offline       retained, QoS 1; offline is also the connection's LWT
    vad/streams/{id}/availability        online | offline       retained, QoS 1; online while the stream is live
    vad/streams/{id}/anomaly             ON | OFF               retained, QoS 1; ON while an event is open
    vad/streams/{id}/score               JSON                   retained, QoS 0; at most once per score interval
    vad/streams/{id}/events              JSON                   QoS 1, not retained; one message per open and close

and, under ``VAD_MQTT_DISCOVERY_PREFIX`` (``homeassistant``), one binary sensor and one sensor per stream::

    homeassistant/binary_sensor/vad_{id}/anomaly/config    retained; empty once the stream has ended
    homeassistant/sensor/vad_{id}/score/config             retained; empty once the stream has ended
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ONLINE, OFFLINE = "online", "offline"
ON, OFF = "ON", "OFF"
MANUFACTURER = "dsanet-vad"


@dataclass(frozen=True)
class Topics:
    """The topic names of one deployment (``prefix``) and its Home Assistant discovery prefix (``None``: none)."""

    prefix: str = "vad"
    discovery_prefix: str | None = "homeassistant"

    @property
    def status(self) -> str:
        """The bridge's own availability (its LWT)."""
        return f"{self.prefix}/status"

    def stream(self, stream_id: str, leaf: str) -> str:
        return f"{self.prefix}/streams/{stream_id}/{leaf}"

    def availability(self, stream_id: str) -> str:
        return self.stream(stream_id, "availability")

    def anomaly(self, stream_id: str) -> str:
        return self.stream(stream_id, "anomaly")

    def score(self, stream_id: str) -> str:
        return self.stream(stream_id, "score")

    def events(self, stream_id: str) -> str:
        return self.stream(stream_id, "events")

    def retained(self, stream_id: str) -> list[str]:
        """The stream's retained state topics (cleared when the stream is gone)."""
        return [self.availability(stream_id), self.anomaly(stream_id), self.score(stream_id)]

    def discovery(self, stream_id: str) -> dict[str, str]:
        """Entity (``anomaly``, ``score``) → its discovery config topic; empty without discovery."""
        if self.discovery_prefix is None:
            return {}
        node = f"vad_{stream_id}"
        return {"anomaly": f"{self.discovery_prefix}/binary_sensor/{node}/anomaly/config",
                "score": f"{self.discovery_prefix}/sensor/{node}/score/config"}


def event_message(stream_id: str, name: str, entry_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """The JSON of one event entry of ``{prefix}stream:{id}:events`` as published on ``…/events``.

    ``type`` is ``open`` or ``close``; ``event_id`` is the event's id (the same in its open and close messages);
    ``entry_id`` is the entry's id (the SSE id, unique per message). A consumer drops repeats by
    ``(event_id, type)``. Every field of the event record follows (``class``, ``class_prob``, ``start_s``,
    ``end_s``, ``peak_score``, ``mean_score``, ``opened_at``, ``closed_at``…), then ``reason`` (why it closed)
    and ``at`` (when the entry was written).
    """
    event = dict(json.loads(fields["event"]))
    event_id = event.pop("id")
    return {"type": fields["kind"], "event_id": event_id, "entry_id": entry_id, "stream_id": stream_id,
            "name": name, **event, "reason": fields.get("reason") or None, "at": float(fields.get("at") or 0)}


def score_message(stream_id: str, score: float, at: float | None, lag_s: float | None) -> dict[str, Any]:
    """The JSON on ``…/score``: the stream's latest anomaly score, when it was scored (unix time) and its lag."""
    return {"stream_id": stream_id, "score": round(score, 6), "at": at,
            "lag_s": None if lag_s is None else round(lag_s, 3)}


def discovery_configs(topics: Topics, stream_id: str, name: str) -> dict[str, dict[str, Any]]:
    """Discovery config topic → config of the stream's Home Assistant entities, one device per stream.

    Both entities are available while the bridge (``vad/status``) **and** the stream (``…/availability``) are
    online. The binary sensor (device class ``problem``) is on while an event is open and carries the latest
    event message as attributes; the sensor shows the latest score.
    """
    device = {"identifiers": [f"dsanet_vad_{stream_id}"], "name": name or stream_id, "manufacturer": MANUFACTURER,
              "model": "DSANet video anomaly detection"}
    common = {"availability": [{"topic": topics.status}, {"topic": topics.availability(stream_id)}],
              "availability_mode": "all", "payload_available": ONLINE, "payload_not_available": OFFLINE,
              "device": device}
    entities = {
        "anomaly": {"name": "Anomaly", "unique_id": f"dsanet_vad_{stream_id}_anomaly",
                    "state_topic": topics.anomaly(stream_id), "payload_on": ON, "payload_off": OFF,
                    "device_class": "problem", "json_attributes_topic": topics.events(stream_id), "qos": 1},
        "score": {"name": "Anomaly score", "unique_id": f"dsanet_vad_{stream_id}_score",
                  "state_topic": topics.score(stream_id), "value_template": "{{ value_json.score }}",
                  "json_attributes_topic": topics.score(stream_id), "state_class": "measurement",
                  "suggested_display_precision": 3},
    }
    return {topic: {**entities[entity], **common} for entity, topic in topics.discovery(stream_id).items()}


@dataclass
class RateLimit:
    """At most one message per ``interval_s`` per key (a stream): :meth:`ready` says whether one may go now."""

    interval_s: float
    clock: Callable[[], float] = time.monotonic
    _sent: dict[str, float] = field(default_factory=dict)

    def ready(self, key: str) -> bool:
        last = self._sent.get(key)
        return last is None or self.clock() - last >= self.interval_s

    def sent(self, key: str) -> None:
        self._sent[key] = self.clock()

    def forget(self, key: str) -> None:
        self._sent.pop(key, None)
