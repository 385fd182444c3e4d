"""MQTT: stream events, per-stream state and Home Assistant discovery, published to a broker (docs/review.md).

:mod:`workers.mqtt.messages` builds the topics and payloads (no IO); :mod:`workers.mqtt.bridge` publishes them
from Redis, off the scoring threads, at least once.
"""
