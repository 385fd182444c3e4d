"""The MQTT bridge: stream events, per-stream state and Home Assistant discovery, published from Redis to a broker.

One bridge publishes for the whole deployment: every stream-capable worker process with ``VAD_MQTT_HOST`` set runs
one, and the one holding the lock ``{prefix}mqtt:bridge`` (``SET NX PX``, renewed every tick, the stream lease's
TTL) connects and publishes; the others wait to take over. Its thread reads Redis, never the scoring threads: the
owners of the streams write their events to Redis as before (:mod:`vad.streamlua`) and know nothing of MQTT, so a
broker that is away, slow or refusing delays nothing but the messages.

**At least once.** The outbox is each stream's events Redis stream (``{prefix}stream:{id}:events``) with a cursor
per stream (``{prefix}mqtt:cursors``, stream id → the last entry id the broker acknowledged). The bridge
publishes the entries after the cursor (QoS 1) and moves the cursor only once the broker has acknowledged each
of them (PUBACK). A broker that restarts, a connection that drops, a bridge or worker that dies: the entries
after the cursor are published again by whoever bridges next. So every event recorded is published at least
once, within the events' retention (``VAD_STREAM_RETENTION_S``); a message may arrive twice, and its
``(event_id, type)`` tells the repeat. Memory stays bounded: one batch of :data:`BATCH` messages is in flight at
a time, and nothing is handed to the client while it is not connected.

The streams it bridges are those in ``{prefix}streams:active``, remembered in ``{prefix}mqtt:streams`` until
they have ended and their last events are published; then their discovery configs and retained state are cleared.

Connection trouble (a broker that cannot be reached, refuses the credentials, or drops the connection) is logged
once per change of state, never raised: the client retries every second, doubling to 10 s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion

from vad.keys import Keys
from vad.streams import StreamRecord, StreamState
from workers.mqtt import messages as m
from workers.mqtt.messages import RateLimit, Topics
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)

BATCH = 100
"""Event messages published before waiting for their acknowledgements (the most held in memory at once)."""
ACK_TIMEOUT_S = 10.0
"""How long a batch may wait for the broker's PUBACKs before the bridge tries again from the cursor (at most a third
of the lock's TTL, so that the lock is renewed in time)."""
TICK_S = 0.25

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def make_client(settings: WorkerSettings, client_id: str) -> mqtt.Client:
    """A paho client configured from the settings (credentials, TLS, the LWT), not yet connected."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                         protocol=mqtt.MQTTv311)
    if settings.mqtt_username is not None:
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password is not None else None
        client.username_pw_set(settings.mqtt_username, password)
    if settings.mqtt_tls:
        client.tls_set(ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
                       certfile=str(settings.mqtt_cert_file) if settings.mqtt_cert_file else None,
                       keyfile=str(settings.mqtt_key_file) if settings.mqtt_key_file else None,
                       cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(settings.mqtt_tls_insecure)
    client.will_set(Topics(settings.mqtt_topic_prefix).status, m.OFFLINE, qos=1, retain=True)
    client.reconnect_delay_set(1, 10)
    client.max_queued_messages_set(4 * BATCH)
    return client


class MqttBridge:
    """Publishes the deployment's stream events and state to the broker of ``settings`` (see the module).

    Args:
        conn: Redis.
        settings: The worker's settings (``mqtt_*``; ``key_prefix``; ``stream_lease_ttl_s`` for the lock).
        worker: This process's name (the lock's holder; appended to the client id).
        client_factory: Builds the paho client (tests); :func:`make_client` by default.
    """

    def __init__(self, conn: redis.Redis, settings: WorkerSettings, worker: str,
                 client_factory: Callable[[WorkerSettings, str], mqtt.Client] = make_client) -> None:
        self.conn, self.settings, self.worker = conn, settings, worker
        self.keys = Keys(settings.key_prefix)
        self.topics = Topics(settings.mqtt_topic_prefix, settings.mqtt_discovery_prefix)
        self.client_factory = client_factory
        self.scores = RateLimit(settings.mqtt_score_interval_s)
        self.broker = f"{settings.mqtt_host}:{settings.mqtt_port}"
        self._lock_ms = int(settings.stream_lease_ttl_s * 1000)
        self._renew, self._release = conn.register_script(_RENEW), conn.register_script(_RELEASE)
        self._client: mqtt.Client | None = None
        self._connected, self._closing = threading.Event(), threading.Event()
        self._leading = False
        self._renewed_at = 0.0
        self._session = 0  # counts connections: retained state is published again on each (a broker may forget it)
        self._synced_session = 0
        self._retained: dict[str, str] = {}  # topic → payload the broker acknowledged in this session
        self._score_at: dict[str, float | None] = {}
        self._state: str | None = None  # the connection's state as last logged
        self._redis_error: str | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> MqttBridge:
        self._thread = threading.Thread(target=self._loop, name="vad-mqtt", daemon=True)
        self._thread.start()
        log.info("MQTT: on (broker %s, topics %s/…)", self.broker, self.topics.prefix)
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop bridging: say ``offline`` on the status topic, disconnect, give the lock to another worker."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._disconnect(say_offline=True)
        if self._leading:
            with contextlib.suppress(redis.RedisError):  # else the lock expires on its own
                self._release(keys=[self.keys.mqtt_lock], args=[self.worker])
            self._leading = False

    def _loop(self) -> None:
        while not self._closing.wait(TICK_S):
            try:
                if self._lead() and self._connected.is_set():
                    self.sync()
                self._redis_state(None)
            except redis.RedisError as exc:  # Redis away: nothing to publish from; the lock lapses, try again
                self._redis_state(f"{type(exc).__name__}: {exc}")
            except Exception:
                log.exception("MQTT: the bridge failed; trying again")

    def _redis_state(self, error: str | None) -> None:
        if error != self._redis_error:
            if error is None:
                log.info("MQTT: Redis answers again; publishing goes on")
            else:
                log.warning("MQTT: paused, Redis unavailable (%s)", error)
            self._redis_error = error

    # -- the lock: one bridge per deployment --------------------------------------------------------------------

    def _still_leading(self) -> bool:
        """Renew the lock during a long pass (a broker slow to acknowledge), so that it never lapses meanwhile."""
        if time.monotonic() - self._renewed_at < self._lock_ms / 3000:
            return self._leading
        return self._lead()

    def _lead(self) -> bool:
        self._renewed_at = time.monotonic()
        if self._leading:
            if not self._renew(keys=[self.keys.mqtt_lock], args=[self.worker, self._lock_ms]):
                log.warning("MQTT: another worker process took over the bridge")
                self._leading = False
                self._disconnect(say_offline=False)
        elif self.conn.set(self.keys.mqtt_lock, self.worker, nx=True, px=self._lock_ms):
            self._leading = True
            self._connect()
        return self._leading

    # -- the connection -------------------------------------------------------------------------------------------

    def _connect(self) -> None:
        client = self.client_factory(self.settings, f"{self.settings.mqtt_client_id}-{self.worker}")
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        self._client = client
        client.connect_async(str(self.settings.mqtt_host), self.settings.mqtt_port, self.settings.mqtt_keepalive_s)
        client.loop_start()  # paho's network thread: connects, retries, sends, reads acknowledgements

    def _disconnect(self, say_offline: bool) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if say_offline and self._connected.is_set():
            info = client.publish(self.topics.status, m.OFFLINE, qos=1, retain=True)
            self._acked([info], timeout_s=2.0)
        self._connected.clear()
        client.disconnect()
        client.loop_stop()

    def _set_state(self, state: str, message: str, level: int = logging.WARNING) -> None:
        if state != self._state:  # one line per change, never one per retry
            self._state = state
            log.log(level, "MQTT: %s", message)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._set_state(f"refused {reason}", f"broker {self.broker} refused the connection ({reason}): check "
                                                  "VAD_MQTT_USERNAME, VAD_MQTT_PASSWORD and the broker's ACL; "
                                                  "retrying, events wait in Redis")
            return
        self._session += 1
        client.subscribe(self.topics.status, qos=1)  # to answer a stale LWT of an earlier bridge (below)
        client.publish(self.topics.status, m.ONLINE, qos=1, retain=True)
        self._connected.set()
        self._set_state("connected", f"connected to {self.broker}", logging.INFO)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected.clear()
        if self._closing.is_set() or (self._state or "").startswith("refused"):  # a refusal was said already
            return
        if self._state == "connected":
            self._set_state("away", f"connection to {self.broker} lost ({reason}); reconnecting, events wait in "
                                    "Redis")
        else:  # the connection opened but closed before the broker answered: TLS or the listener's rules
            self._set_state("closed", f"broker {self.broker} closed the connection before accepting it ({reason}): "
                                      "check VAD_MQTT_TLS, VAD_MQTT_CERT_FILE and the broker's listener; retrying, "
                                      "events wait in Redis")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        why = ("no answer, or its TLS certificate was not accepted: check VAD_MQTT_CA_FILE and that VAD_MQTT_HOST is "
               "a name in the certificate") if self.settings.mqtt_tls else "no answer"
        self._set_state("away", f"cannot connect to the broker at {self.broker} ({why}); retrying, events wait in "
                                "Redis")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # The broker publishes a dead bridge's LWT (offline) up to 1.5 keep-alives after it died, possibly after
        # this bridge said online: say it again.
        if message.topic == self.topics.status and message.payload == m.OFFLINE.encode() \
                and not self._closing.is_set() and self._leading:
            client.publish(self.topics.status, m.ONLINE, qos=1, retain=True)

    def _acked(self, infos: Iterable[mqtt.MQTTMessageInfo], timeout_s: float | None = None) -> bool:
        """Whether the broker acknowledged every message (QoS 0: whether each was sent) within ``timeout_s``."""
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else min(ACK_TIMEOUT_S,
                                                                                    self._lock_ms / 3000))
        for info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (ValueError, RuntimeError):  # not connected, or the client's queue is full
                return False
            if not info.is_published():
                return False
        return True

    def _publish(self, topic: str, payload: str, qos: int = 1, retain: bool = True) -> bool:
        client = self._client
        if client is None or not self._connected.is_set():
            return False
        return self._acked([client.publish(topic, payload, qos=qos, retain=retain)])

    def _retain(self, topic: str, payload: str, qos: int = 1) -> bool:
        """Publish a retained payload unless the broker already has it from this session."""
        if self._retained.get(topic) == payload:
            return True
        if not self._publish(topic, payload, qos):
            return False
        self._retained[topic] = payload
        return True

    # -- what is published -----------------------------------------------------------------------------------------

    def sync(self) -> None:
        """One pass over the bridged streams: their new events, state, latest score, discovery configs."""
        if self._synced_session != self._session:  # a new connection: the broker may have forgotten everything
            self._retained.clear()
            self._score_at.clear()
            self._synced_session = self._session
        ids = self._streams()
        with self.conn.pipeline(transaction=False) as pipe:  # one round trip for every stream's news
            for stream_id in ids:
                pipe.hgetall(self.keys.stream(stream_id))
                pipe.hget(self.keys.mqtt_cursors, stream_id)
                pipe.xrevrange(self.keys.stream_events(stream_id), count=1)
            answers = pipe.execute()
        for i, stream_id in enumerate(ids):
            if self._closing.is_set() or not self._connected.is_set() or not self._still_leading():
                return
            data, cursor, last = answers[3 * i: 3 * i + 3]
            record = StreamRecord.read(stream_id, data)
            news = bool(last) and (cursor is None or _text(cursor) != _text(last[0][0]))
            if not self._sync_stream(stream_id, record, _text(cursor) if cursor is not None else None, news):
                return

    def _streams(self) -> list[str]:
        active = [_text(i) for i in self.conn.zrange(self.keys.streams_active, 0, -1)]
        if active:
            self.conn.sadd(self.keys.mqtt_streams, *active)
        return sorted(_text(i) for i in self.conn.smembers(self.keys.mqtt_streams))

    def _sync_stream(self, stream_id: str, record: StreamRecord | None, cursor: str | None, news: bool) -> bool:
        """Publish what is new of one stream; ``False`` when the broker did not take it (try again later)."""
        name = record.name if record is not None else stream_id
        ended = record is None or record.status.terminal
        if not ended and not all(self._retain(topic, json.dumps(config))
                                 for topic, config in m.discovery_configs(self.topics, stream_id, name).items()):
            return False
        if news and not self._publish_events(stream_id, name, cursor):
            return False
        if record is None or ended:
            return self._retire(stream_id)
        if not (self._retain(self.topics.availability(stream_id), m.ONLINE if record.status == StreamState.live
                             else m.OFFLINE)
                and self._retain(self.topics.anomaly(stream_id), m.ON if record.open_event else m.OFF)):
            return False
        if record.last_score is not None and record.last_score_at != self._score_at.get(stream_id) \
                and self.scores.ready(stream_id):
            payload = json.dumps(m.score_message(stream_id, record.last_score, record.last_score_at, record.lag_s))
            if not self._publish(self.topics.score(stream_id), payload, qos=0):
                return False
            self.scores.sent(stream_id)
            self._score_at[stream_id] = record.last_score_at
        return True

    def _publish_events(self, stream_id: str, name: str, cursor: str | None) -> bool:
        """The event entries after ``cursor``, QoS 1; the stream's cursor moves once the broker acknowledged them."""
        client = self._client
        while client is not None and self._connected.is_set():
            start = f"({cursor}" if cursor is not None else "-"
            entries: list[Any] = self.conn.xrange(self.keys.stream_events(stream_id), start, "+",  # type: ignore[assignment]
                                                  count=BATCH)
            if not entries:
                return True
            topic = self.topics.events(stream_id)
            infos = [client.publish(topic, json.dumps(m.event_message(
                stream_id, name, _text(entry_id), {_text(k): _text(v) for k, v in fields.items()})), qos=1)
                for entry_id, fields in entries]
            if not self._acked(infos):
                return False
            cursor = _text(entries[-1][0])
            self.conn.hset(self.keys.mqtt_cursors, stream_id, cursor)
            if len(entries) < BATCH:
                return True
        return False

    def _retire(self, stream_id: str) -> bool:
        """An ended stream: its Home Assistant entities removed (empty configs), its retained state cleared."""
        topics = [*self.topics.discovery(stream_id).values(), *self.topics.retained(stream_id)]
        if not all(self._publish(topic, "") for topic in topics):
            return False
        with self.conn.pipeline() as pipe:
            pipe.srem(self.keys.mqtt_streams, stream_id)
            pipe.hdel(self.keys.mqtt_cursors, stream_id)
            pipe.execute()
        for topic in topics:
            self._retained.pop(topic, None)
        self.scores.forget(stream_id)
        self._score_at.pop(stream_id, None)
        log.info("MQTT: stream %s ended; its last events are published and its entities removed", stream_id)
        return True
