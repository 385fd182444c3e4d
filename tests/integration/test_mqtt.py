"""MQTT against a real Mosquitto broker (issue 19, item 5), with a real stream running through the stream service.

The broker is started by the test on a free 127.0.0.1 port with its own config: no anonymous access, a password file
made with ``mosquitto_passwd -b``, running as the test's user (as root it would switch to ``mosquitto``, who
cannot read the test's files), no persistence (a restart forgets every retained message, so the bridge must
publish its state again). The stream is real: FFmpeg publishes 3 s of black and 3 s of white, over and over, as
MPEG-TS over UDP at real-time pace, scored by :class:`~workers.runtime.streams.StreamService` with its real runner and
a small random model whose threshold lies between its scores of black and of white (as in
``tests/e2e/test_streams_e2e.py``): an event opens with each white stretch and closes with the next black one.

A paho subscriber checks the topics and payloads, the retained state, Home Assistant's discovery configs, and that
after the broker was stopped and started again in the middle of the stream every event recorded meanwhile
arrives (at least once; told apart by event id) while scoring went on at its pace. ``scripts/ensure-mqtt.sh``
installs Mosquitto; without it these tests skip.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.publish import FFMPEG, Publisher
from vad.cli.stack import free_port
from vad.keys import Keys
from vad.streams import StreamRecord
from workers.settings import WorkerSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BRIDGE_USER, BRIDGE_PASSWORD = "vad", "bridge-pass-0123"
READER_USER, READER_PASSWORD = "home-assistant", "reader-pass-0123"
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def tool(name: str) -> str | None:
    return shutil.which(name, path=SBIN)


class Mosquitto:
    """A Mosquitto broker on 127.0.0.1 with password authentication, startable again on the same port."""

    def __init__(self, root: Path, tls: Certificates | None = None) -> None:
        self.root, self.port = root, free_port()
        self.process: subprocess.Popen | None = None
        passwords = root / "passwords"
        passwords.touch(mode=0o600)
        for user, password in ((BRIDGE_USER, BRIDGE_PASSWORD), (READER_USER, READER_PASSWORD)):
            subprocess.run([str(tool("mosquitto_passwd")), "-b", str(passwords), user, password], check=True,
                           capture_output=True)
        self.config = root / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous false", f"password_file {passwords}",
                 "persistence false", f"user {getpass.getuser()}", f"log_dest file {root / 'mosquitto.log'}",
                 "log_type all"]
        if tls is not None:  # TLS only, and the client must show a certificate of the test CA
            lines += [f"cafile {tls.ca}", f"certfile {tls.server}", f"keyfile {tls.server_key}",
                      "require_certificate true"]
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def log(self) -> str:
        path = self.root / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> Mosquitto:
        self.process = subprocess.Popen([str(tool("mosquitto")), "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=(self.root / "mosquitto.err").open("ab"))
        wait(lambda: f"Opening ipv4 listen socket on port {self.port}" in self.log or self.process.poll() is not None,
             10, "the broker to listen")
        assert self.process.poll() is None, (self.root / "mosquitto.err").read_text()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)


@dataclass(frozen=True)
class Certificates:
    """A test CA, a certificate of the broker (for localhost only) and one of the client, both signed by the CA."""

    ca: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path

    @classmethod
    def make(cls, root: Path) -> Certificates:
        def run(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=root)

        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=vad test CA")
        for name, extra in (("server", "subjectAltName=DNS:localhost"), ("client", "")):
            run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=vad test {name}")
            (root / f"{name}.ext").write_text(extra + "\n")
            run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "1", *(["-extfile", f"{name}.ext"] if extra else []))
        return cls(root / "ca.crt", root / "server.crt", root / "server.key", root / "client.crt", root / "client.key")


@dataclass
class Received:
    topic: str
    payload: str
    retain: bool
    at: float


@dataclass
class Subscriber:
    """A paho client (the reader's credentials) subscribed to the service's topics; reconnects and resubscribes."""

    port: int
    topics: list[str]
    tls: Certificates | None = None  # then it connects to localhost, the name in the broker's certificate
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"reader-{secrets.token_hex(3)}")
        self.client.username_pw_set(READER_USER, READER_PASSWORD)
        if self.tls is not None:
            self.client.tls_set(str(self.tls.ca), str(self.tls.client), str(self.tls.client_key))
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = lambda c, *a: [c.subscribe(t, qos=1) for t in self.topics]
        self.client.on_message = lambda c, u, m: self.messages.append(
            Received(m.topic, m.payload.decode(), bool(m.retain), time.monotonic()))
        self.client.connect_async("127.0.0.1" if self.tls is None else "localhost", self.port, keepalive=5)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str) -> list[Received]:
        return [m for m in list(self.messages) if m.topic == topic]

    def events(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.on(topic)]


def wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    if tool("mosquitto") is None or tool("mosquitto_passwd") is None:
        pytest.skip("Mosquitto is not installed: run `bash scripts/ensure-mqtt.sh`")
    running = Mosquitto(tmp_path).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def black_white(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s of MPEG-TS: 3 s black, then 3 s white (50 fps, a keyframe every 0.5 s), to be looped live."""
    if shutil.which(FFMPEG) is None:
        pytest.skip("ffmpeg is not installed: run `bash scripts/ensure-stream-tools.sh`")
    path = tmp_path_factory.mktemp("mqtt") / "black-white.ts"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=black:s=96x72:r=50:d=6,format=yuv420p,geq=lum='if(lt(T\\,3)\\,16\\,235)':cb=128:cr=128",
                    "-c:v", "mpeg2video", "-g", "25", "-q:v", "4", "-f", "mpegts", str(path)], check=True)
    return path


def mqtt_settings(prefix: str, port: int, **overrides: Any) -> WorkerSettings:
    base: dict[str, Any] = {
        "key_prefix": prefix, "stream_lease_ttl_s": 4, "stream_allowlist": ["127.0.0.1/32"], "device": "cpu",
        "stream_window": 1, "stream_hysteresis": 0.0, "stream_merge_gap_s": 0.5, "stream_read_timeout_s": 2.0,
        "mqtt_host": "127.0.0.1", "mqtt_port": port, "mqtt_username": BRIDGE_USER, "mqtt_password": BRIDGE_PASSWORD,
        "mqtt_topic_prefix": f"vadtest/{prefix.strip(':')}", "mqtt_discovery_prefix": f"ha-{prefix.strip(':')}",
        "mqtt_score_interval_s": 1.0, "mqtt_keepalive_s": 5,
        "evidence": False}  # not what these tests are about, and it would be written under ./data/uploads
    return WorkerSettings(**{**base, **overrides})


def redis_entries(conn: Any, keys: Keys, stream_id: str) -> dict[str, tuple[str, str]]:
    """Entry id → (event id, kind) of the stream's recorded events."""
    found = conn.xrange(keys.stream_events(stream_id))
    return {i.decode(): (json.loads(f[b"event"])["id"], f[b"kind"].decode()) for i, f in found}


def check_discovery(configs: dict[str, dict[str, Any]], topics: Any, stream_id: str, name: str) -> None:
    anomaly, score = configs[topics.discovery(stream_id)["anomaly"]], configs[topics.discovery(stream_id)["score"]]
    for config in (anomaly, score):
        assert {"name", "unique_id", "state_topic", "device", "availability"} <= set(config), config
        assert config["device"]["name"] == name and config["device"]["identifiers"] == [f"dsanet_vad_{stream_id}"]
        assert [a["topic"] for a in config["availability"]] == [topics.status, topics.availability(stream_id)]
        assert config["availability_mode"] == "all"
    assert anomaly["state_topic"] == topics.anomaly(stream_id) and anomaly["device_class"] == "problem"
    assert (anomaly["payload_on"], anomaly["payload_off"]) == ("ON", "OFF")
    assert score["state_topic"] == topics.score(stream_id) and score["value_template"] == "{{ value_json.score }}"
    assert anomaly["unique_id"] != score["unique_id"]


def test_events_state_and_discovery_reach_mosquitto_and_survive_a_broker_restart(
        live_redis: Any, broker: Mosquitto, black_white: Path, tmp_path: Path) -> None:
    from service.settings import ServiceSettings
    from service.streams import StreamStore
    from tests.conftest import tiny_bundle
    from tests.e2e.test_streams_e2e import black_white_threshold
    from workers.mqtt.messages import Topics
    from workers.runtime.streams import StreamService
    from workers.stream.online import StreamEngine

    prefix = f"test-{secrets.token_hex(4)}:"
    settings = mqtt_settings(prefix, broker.port)
    topics = Topics(settings.mqtt_topic_prefix, settings.mqtt_discovery_prefix)
    keys = Keys(prefix)
    bundle = tiny_bundle("ucf", seed=2)
    threshold = black_white_threshold(bundle)
    engine = StreamEngine(bundle, settings)
    store = StreamStore(live_redis, ServiceSettings(key_prefix=prefix, stream_lease_ttl_s=4))
    reader = Subscriber(broker.port, [f"{topics.prefix}/#", f"{topics.discovery_prefix}/#"])
    worker = StreamService(SimpleNamespace(settings=settings, redis=live_redis), "w1", capacity=1,
                           engine_factory=lambda model: engine).start()
    udp = free_port(socket.SOCK_DGRAM)
    record = store.create(StreamRecord(id=f"cam-{secrets.token_hex(3)}", owner="k", name="Front door",
                                       url=f"udp://127.0.0.1:{udp}", display_url=f"udp://127.0.0.1:{udp}",
                                       threshold=threshold))
    stream_id, events_topic = record.id, topics.events(record.id)
    publisher = Publisher(black_white, f"udp://127.0.0.1:{udp}", copy=True, loop=-1, log=tmp_path / "ffmpeg.log")
    try:
        publisher.start()
        # -- while the broker is up: events, state, discovery, the rate-limited score ----------------------------
        wait(lambda: any(e["type"] == "close" for e in reader.events(events_topic)), 90, "a closed event over MQTT")
        opened, closed = (next(e for e in reader.events(events_topic) if e["type"] == kind)
                          for kind in ("open", "close"))
        assert opened["event_id"] == closed["event_id"] and opened["stream_id"] == stream_id
        for message in (opened, closed):
            assert {"event_id", "entry_id", "stream_id", "class", "peak_score", "mean_score", "opened_at",
                    "closed_at", "start_s", "end_s", "name"} <= set(message), message
        assert opened["closed_at"] is None and closed["closed_at"] >= closed["opened_at"] == opened["opened_at"]
        assert closed["peak_score"] > threshold and closed["name"] == "Front door"
        wait(lambda: "ON,OFF" in ",".join(m.payload for m in reader.on(topics.anomaly(stream_id))), 5,
             "the anomaly state ON, then OFF")
        assert reader.on(topics.anomaly(stream_id))[0].payload == "OFF"  # before the first event
        assert reader.on(topics.availability(stream_id))[-1].payload == "online"
        wait(lambda: len(reader.on(topics.score(stream_id))) >= 3, 10, "three scores")
        # a later subscriber gets the current state from the broker: retained
        late = Subscriber(broker.port, [f"{topics.prefix}/#", f"{topics.discovery_prefix}/#"])
        wait(lambda: len(late.on(topics.score(stream_id))) >= 1 and len(late.messages) >= 6, 10, "retained messages")
        late.close()
        retained = {m.topic: m.payload for m in late.messages if m.retain}
        assert retained[topics.status] == "online" and retained[topics.availability(stream_id)] == "online"
        assert retained[topics.anomaly(stream_id)] in ("ON", "OFF")
        assert json.loads(retained[topics.score(stream_id)])["stream_id"] == stream_id
        check_discovery({t: json.loads(p) for t, p in retained.items() if t.startswith(f"{topics.discovery_prefix}/")},
                        topics, stream_id, "Front door")
        assert not any(m.topic == events_topic for m in late.messages)  # events are not retained
        # -- the broker goes away in the middle of the stream ---------------------------------------------------------
        scored_before = store.get(stream_id, "k").snippets_scored
        live_since = next(m.at for m in reader.on(topics.availability(stream_id)) if m.payload == "online")
        rate_before = scored_before / (time.monotonic() - live_since)
        broker.stop()
        stopped, scored_at_stop = time.monotonic(), store.get(stream_id, "k").snippets_scored
        published = {e["entry_id"] for e in reader.events(events_topic)}

        def recorded_while_away() -> set[str]:
            return {i for i, (_, kind) in redis_entries(live_redis, keys, stream_id).items() if i not in published}

        wait(lambda: {k for _, k in (redis_entries(live_redis, keys, stream_id)[i]
                                     for i in recorded_while_away())} == {"open", "close"}, 30, "an event while away")
        away_s, scored_away = time.monotonic() - stopped, store.get(stream_id, "k").snippets_scored - scored_at_stop
        broker.start()
        restarted = time.monotonic()
        wait(lambda: set(redis_entries(live_redis, keys, stream_id)) <= {e["entry_id"] for e in reader.events(
            events_topic)}, 30, "every recorded event over MQTT after the restart")
        caught_up_s = time.monotonic() - restarted
        print(f"\nbroker away {away_s:.1f} s: {scored_away} snippets scored ({scored_away / away_s:.2f}/s, "
              f"{rate_before:.2f}/s before); {len(recorded_while_away())} event entries recorded meanwhile, all "
              f"published {caught_up_s:.1f} s after the broker returned")
        assert scored_away / away_s >= 0.8 * rate_before  # scoring did not wait for the broker
        wait(lambda: len(reader.on(topics.status)) and reader.on(topics.status)[-1].payload == "online", 10,
             "the state published again")
        # -- the stream is stopped: its last events, then its entities removed -----------------------------------
        store.stop(store.get(stream_id, "k"))
        config_topics = list(topics.discovery(stream_id).values())
        wait(lambda: all(reader.on(t) and reader.on(t)[-1].payload == "" for t in config_topics), 15,
             "empty discovery configs")
        recorded = redis_entries(live_redis, keys, stream_id)
        received = reader.events(events_topic)
        assert set(recorded) <= {e["entry_id"] for e in received}
        assert set(recorded.values()) == {(e["event_id"], e["type"]) for e in received}  # dedupable by event id
        # the bridge forgets the stream once the broker has taken the empty configs (which the reader may see first)
        wait(lambda: not live_redis.sismember(f"{prefix}mqtt:streams", stream_id), 5, "the stream forgotten")
    finally:
        publisher.stop()
        worker.close()
        reader.close()
        found = list(live_redis.scan_iter(f"{prefix}*"))
        if found:
            live_redis.delete(*found)
    assert reader.on(topics.status)[-1].payload == "offline"  # said on close


def test_wrong_credentials_and_an_unreachable_broker_log_one_line_per_state_and_never_crash(
        live_redis: Any, broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    from workers.mqtt.bridge import MqttBridge

    caplog.set_level(logging.INFO, logger="workers.mqtt.bridge")
    for port, password, expected in ((broker.port, "wrong-password", "refused the connection"),
                                     (free_port(), BRIDGE_PASSWORD, "cannot connect to the broker")):
        prefix = f"test-{secrets.token_hex(4)}:"
        caplog.clear()
        bridge = MqttBridge(live_redis, mqtt_settings(prefix, port, mqtt_password=password), "w-bad").start()
        try:
            time.sleep(4.0)  # paho retries after 1 s, then 2 s: three attempts
            assert bridge._thread is not None and bridge._thread.is_alive()
        finally:
            bridge.close()
            live_redis.delete(f"{prefix}mqtt:bridge")
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1 and expected in lines[0], lines
        assert "wrong-password" not in lines[0]
    assert broker.log.count("not authorised") >= 2  # it did retry: the single line is not a single attempt


def add_event(conn: Any, keys: Keys, stream_id: str, event_id: str, kind: str) -> str:
    """An event entry as a stream's owner records it (:mod:`vad.streamlua`), without a video behind it."""
    event = {"id": event_id, "class": "fighting", "class_prob": 0.8, "start_s": 1.0, "end_s": 2.0 if kind == "close"
             else None, "peak_score": 0.9, "mean_score": 0.7, "first_index": 3, "last_index": 6,
             "opened_at": time.time(), "closed_at": time.time() if kind == "close" else None}
    entry = {"kind": kind, "event": json.dumps(event), "reason": "", "at": time.time(), "token": 1}
    return conn.xadd(keys.stream_events(stream_id), entry).decode()


def test_one_bridge_publishes_and_the_next_one_goes_on_from_the_cursor(live_redis: Any, broker: Mosquitto) -> None:
    """Two worker processes: one bridges, the other waits; when the first stops, the second publishes what was
    recorded since, from the cursor, and nothing the first one published again."""
    from service.settings import ServiceSettings
    from service.streams import StreamStore
    from workers.mqtt.bridge import MqttBridge

    prefix = f"test-{secrets.token_hex(4)}:"
    settings = mqtt_settings(prefix, broker.port)
    keys = Keys(prefix)
    store = StreamStore(live_redis, ServiceSettings(key_prefix=prefix))
    record = store.create(StreamRecord(id=f"cam-{secrets.token_hex(3)}", owner="k", name="Yard",
                                       url="udp://127.0.0.1:9", display_url="udp://127.0.0.1:9"))
    topic = f"{settings.mqtt_topic_prefix}/streams/{record.id}/events"
    reader = Subscriber(broker.port, [topic])
    first = add_event(live_redis, keys, record.id, "e1", "open")
    bridges = {name: MqttBridge(live_redis, settings, name).start() for name in ("w-a", "w-b")}
    try:
        wait(lambda: len(reader.events(topic)) == 1, 15, "the first event")
        leader = live_redis.get(keys.mqtt_lock).decode()
        # the cursor moves once the broker's PUBACK is back, which may be just after the subscriber got the message
        wait(lambda: (live_redis.hget(keys.mqtt_cursors, record.id) or b"").decode() == first, 5,
             "the cursor moved after the PUBACK")
        assert f"dsanet-vad-{leader}" in broker.log and f"dsanet-vad-{({'w-a', 'w-b'} - {leader}).pop()}" \
            not in broker.log  # the other one never connected
        bridges.pop(leader).close()
        add_event(live_redis, keys, record.id, "e1", "close")
        add_event(live_redis, keys, record.id, "e2", "open")
        wait(lambda: len(reader.events(topic)) >= 3, 15, "the events recorded after the first bridge stopped")
        time.sleep(0.5)
        assert [(e["event_id"], e["type"]) for e in reader.events(topic)] == [("e1", "open"), ("e1", "close"),
                                                                             ("e2", "open")]
    finally:
        for bridge in bridges.values():
            bridge.close()
        reader.close()
        found = list(live_redis.scan_iter(f"{prefix}*"))
        if found:
            live_redis.delete(*found)


def test_a_deleted_stream_has_its_entities_removed_and_its_retained_state_cleared(
        live_redis: Any, broker: Mosquitto) -> None:
    """DELETE removes the stream's record and events at once: the bridge sees the record gone (as for a stream that
    ended), empties its Home Assistant discovery configs and clears its retained state, so a reader that connects
    afterwards gets nothing of it, and forgets it in Redis."""
    from service.settings import ServiceSettings
    from service.streams import StreamStore
    from workers.mqtt.bridge import MqttBridge
    from workers.mqtt.messages import Topics

    prefix = f"test-{secrets.token_hex(4)}:"
    settings = mqtt_settings(prefix, broker.port)
    topics, keys = Topics(settings.mqtt_topic_prefix, settings.mqtt_discovery_prefix), Keys(prefix)
    store = StreamStore(live_redis, ServiceSettings(key_prefix=prefix))
    record = store.create(StreamRecord(id=f"cam-{secrets.token_hex(3)}", owner="k", name="Gate",
                                       url="udp://127.0.0.1:9", display_url="udp://127.0.0.1:9"))
    add_event(live_redis, keys, record.id, "e1", "open")
    ours = [*topics.discovery(record.id).values(), *topics.retained(record.id)]
    everything = [f"{topics.prefix}/#", f"{topics.discovery_prefix}/#"]
    reader = Subscriber(broker.port, everything)
    bridge = MqttBridge(live_redis, settings, "w-a").start()
    late: Subscriber | None = None
    try:
        configs = list(topics.discovery(record.id).values())
        wait(lambda: all(reader.on(t) and reader.on(t)[-1].payload for t in configs), 15, "the discovery configs")
        wait(lambda: reader.on(topics.availability(record.id)), 15, "the stream's availability")
        wait(lambda: live_redis.hget(keys.mqtt_cursors, record.id) is not None, 15, "the event published")
        store.delete(store.get(record.id, "k"))
        wait(lambda: all(reader.on(t) and reader.on(t)[-1].payload == "" for t in configs), 15,
             "empty discovery configs")
        wait(lambda: all(not reader.on(t) or reader.on(t)[-1].payload == "" for t in topics.retained(record.id)),
             15, "the retained state cleared")
        wait(lambda: not live_redis.sismember(keys.mqtt_streams, record.id), 5, "the stream forgotten")
        wait(lambda: live_redis.hget(keys.mqtt_cursors, record.id) is None, 5, "the stream's cursor dropped")
        late = Subscriber(broker.port, everything)  # what the broker still keeps: nothing of the deleted stream
        wait(lambda: late.on(topics.status), 15, "the bridge's retained status")
        time.sleep(0.5)
        assert [m.topic for m in late.messages if m.topic in ours] == []
    finally:
        bridge.close()
        reader.close()
        if late is not None:
            late.close()
        found = list(live_redis.scan_iter(f"{prefix}*"))
        if found:
            live_redis.delete(*found)


def test_tls_with_a_ca_file_and_a_client_certificate(live_redis: Any, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The broker's certificate checked against VAD_MQTT_CA_FILE and the host name (unless VAD_MQTT_TLS_INSECURE),
    the worker's own certificate shown; a refusal either way is one log line."""
    from workers.mqtt.bridge import MqttBridge

    if tool("mosquitto") is None or shutil.which("openssl") is None:
        pytest.skip("Mosquitto or openssl is not installed: run `bash scripts/ensure-mqtt.sh`")
    certs = Certificates.make(tmp_path)
    broker = Mosquitto(tmp_path, tls=certs).start()
    prefix = f"test-{secrets.token_hex(4)}:"
    tls = {"mqtt_tls": True, "mqtt_ca_file": certs.ca, "mqtt_port": broker.port}
    status = f"vadtest/{prefix.strip(':')}/status"
    reader = Subscriber(broker.port, [status], tls=certs)
    caplog.set_level(logging.INFO, logger="workers.mqtt.bridge")
    try:
        client = {"mqtt_cert_file": certs.client, "mqtt_key_file": certs.client_key}
        for host, extra, connects in (("localhost", client, True),
                                      ("localhost", {}, False),  # no client certificate: the broker refuses
                                      ("127.0.0.1", client, False),  # not a name in the broker's certificate
                                      ("127.0.0.1", {**client, "mqtt_tls_insecure": True}, True)):
            caplog.clear()
            settings = mqtt_settings(prefix, broker.port, mqtt_host=host, **tls, **extra)
            bridge = MqttBridge(live_redis, settings, "w-tls").start()
            try:
                if connects:
                    wait(lambda: [m.payload for m in reader.on(status)][-1:] == ["online"], 15, "online over TLS")
                else:
                    time.sleep(3.5)
                    assert bridge._thread is not None and bridge._thread.is_alive()
            finally:
                bridge.close()
                live_redis.delete(f"{prefix}mqtt:bridge")
            lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(lines) == (0 if connects else 1), lines
            print(f"\n{host} {sorted(extra)}: {lines}")
    finally:
        reader.close()
        broker.stop()
