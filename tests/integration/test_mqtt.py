"""The MQTT publisher against a real Mosquitto broker: delivery, retained state, a broker that is
down (nothing waits, drops counted), a broker that comes back (publishing resumes), credentials."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genesis.config import load_settings
from genesis.config.mqtt import MqttConfig
from genesis.ops.metrics import sample_values
from genesis.services.mqtt import Message, MqttPublisher
from tests.mqtt_broker import Broker, Subscriber, make_tls_files
from tests.ports import free_port


def dropped(reason: str) -> float:
    return sample_values("genesis_mqtt_dropped_total").get((("reason", reason),), 0.0)


def wait_until(cond: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def broker(tmp_path: Path) -> object:
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def test_events_and_retained_state_reach_a_subscriber(broker: Broker) -> None:
    sub = Subscriber(broker.port, ["t/#"])
    pub = MqttPublisher(MqttConfig(enabled=True, port=broker.port))
    try:
        for i in range(5):
            pub.publish(Message("t/cam/event/zone_enter", json.dumps({"n": i}).encode()))
        pub.publish(Message("t/cam/people", b"1", retain=True))
        pub.publish(Message("t/cam/people", b"2", retain=True))  # replaces the pending one if not sent yet
        got = sub.wait_for(5, "/event/zone_enter")
        assert [m.json()["n"] for m in got] == [0, 1, 2, 3, 4]
        assert wait_until(lambda: sub.on("/people") and sub.on("/people")[-1].payload == b"2")
    finally:
        pub.close()
        sub.close()
    assert pub.dropped == 0 and pub.published >= 6
    late = Subscriber(broker.port, ["t/cam/people"])  # a retained value is there for a new subscriber
    try:
        (msg,) = late.wait_for(1)
        assert msg.payload == b"2" and msg.retain
    finally:
        late.close()


def test_broker_down_never_waits_counts_drops_and_resumes_when_back(tmp_path: Path) -> None:
    """Shipped defaults (buffer 1000, reconnect 1..30 s): with the broker away the publisher keeps the
    newest 1000 events and counts the rest; once the broker is back it delivers them and new ones."""
    port = free_port()
    config = MqttConfig(enabled=True, port=port)
    assert config.buffer_messages == 1000
    before = dropped("buffer_full")
    pub = MqttPublisher(config)
    broker = Broker(tmp_path, port)
    try:
        for i in range(1500):
            pub.publish(Message("g/cam/event/line_cross", str(i).encode()))
        assert not pub.connected
        assert pub.dropped == 500 and dropped("buffer_full") - before == 500
        assert pub.pending() == 1000
        broker.start()
        sub = Subscriber(port, ["g/#"])
        try:
            assert wait_until(lambda: pub.connected, 40), "the publisher did not reconnect"
            pub.publish(Message("g/cam/event/line_cross", b"new"))
            got = sub.wait_for(1001, "/line_cross", timeout=30)
            payloads = [m.payload.decode() for m in got]
            assert payloads[-1] == "new"
            assert payloads[:-1] == [str(i) for i in range(500, 1500)]  # the oldest 500 were dropped
            # the broker goes away again and comes back: publishing resumes once more
            broker.stop()
            assert wait_until(lambda: not pub.connected, 20)
            pub.publish(Message("g/cam/event/line_cross", b"while-away"))
        finally:
            sub.close()
        broker.start()
        sub = Subscriber(port, ["g/#"])
        try:
            assert wait_until(lambda: pub.connected, 40)
            pub.publish(Message("g/cam/event/line_cross", b"again"))
            got = [m.payload for m in sub.wait_for(2, "/line_cross")]
            assert got[-1] == b"again"
        finally:
            sub.close()
    finally:
        pub.close()
        broker.stop()


def test_closing_without_a_broker_does_not_wait_and_counts_what_is_left() -> None:
    pub = MqttPublisher(MqttConfig(enabled=True, port=free_port()))
    before = dropped("shutdown")
    for i in range(7):
        pub.publish(Message("g/cam/event/alert", str(i).encode()))
    pub.publish(Message("g/cam/state", b"{}", retain=True))
    pub.close()  # flush_timeout_s is only spent while connected
    assert pub.dropped == 8 and dropped("shutdown") - before == 8
    pub.publish(Message("g/cam/event/alert", b"late"))  # after close: dropped, never raised
    assert pub.dropped == 9


def test_credentials_work_and_the_password_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-Pa55word"
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "genesis", secret], check=True,
                   capture_output=True)
    passwd.chmod(0o600)
    broker = Broker(tmp_path, password_file=passwd).start()
    caplog.set_level(logging.DEBUG)
    try:
        settings = load_settings(environ={"GENESIS_MQTT__ENABLED": "true", "GENESIS_MQTT__PORT": str(broker.port),
                                          "GENESIS_MQTT__USERNAME": "genesis", "GENESIS_MQTT__PASSWORD": secret})
        assert secret not in repr(settings) and secret not in settings.model_dump_json()
        sub = Subscriber(broker.port, ["g/#"], username="genesis", password=secret)
        good = MqttPublisher(settings.mqtt)
        bad = MqttPublisher(settings.mqtt.model_copy(update={"password": None, "username": "genesis"}))
        try:
            good.publish(Message("g/cam/event/recognised", b"ok"))
            bad.publish(Message("g/cam/event/recognised", b"refused"))
            assert [m.payload for m in sub.wait_for(1)] == [b"ok"]
            assert wait_until(lambda: "refused the connection" in caplog.text, 10)
            assert not bad.connected
        finally:
            good.close()
            bad.close()
            sub.close()
        assert bad.dropped == 1
    finally:
        broker.stop()
    assert secret not in caplog.text


def test_tls_with_the_brokers_ca_and_a_refused_untrusted_broker(tmp_path: Path) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    broker = Broker(tmp_path, tls=(ca, cert, key)).start()
    try:
        sub = Subscriber(broker.port, ["g/#"], ca_file=ca)
        trusted = MqttPublisher(MqttConfig(enabled=True, port=broker.port, tls={"enabled": True, "ca_file": ca}))
        # the system trust store does not know the test CA: no connection, nothing sent in clear
        untrusted = MqttPublisher(MqttConfig(enabled=True, port=broker.port, tls={"enabled": True}))
        try:
            trusted.publish(Message("g/cam/event/alert", b"over tls"))
            untrusted.publish(Message("g/cam/event/alert", b"must not arrive"))
            assert [m.payload for m in sub.wait_for(1)] == [b"over tls"]
            time.sleep(1.0)
            assert [m.payload for m in sub.messages] == [b"over tls"] and not untrusted.connected
        finally:
            trusted.close()
            untrusted.close()
            sub.close()
        assert trusted.published == 1 and untrusted.dropped == 1
    finally:
        broker.stop()


PUBLISHER = """
import sys, time
from genesis.config.mqtt import MqttConfig
from genesis.services.mqtt import MqttPublisher
pub = MqttPublisher(MqttConfig(enabled=True, port=int(sys.argv[1]), topic_prefix="home/g"))
while not pub.connected:
    time.sleep(0.02)
print("connected", flush=True)
time.sleep(600)
"""


def test_availability_online_then_offline_when_the_process_is_killed_or_closes(broker: Broker) -> None:
    """PREFIX/available (retained): ``online`` on connect; SIGKILL the publishing process and the
    broker delivers its last will, ``offline``; a clean close says ``offline`` itself, and while
    another publisher is still up it says ``online`` again."""
    sub = Subscriber(broker.port, ["home/g/available"])
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(broker.port)], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"connected\n"
        assert wait_until(lambda: [m.payload for m in sub.messages] == [b"online"], 10), sub.messages
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert wait_until(lambda: sub.messages and sub.messages[-1].payload == b"offline", 10), sub.messages
        assert [m.payload for m in sub.messages] == [b"online", b"offline"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sub.close()
    late = Subscriber(broker.port, ["home/g/available"])  # retained: a new subscriber learns it at once
    try:
        assert [m.payload for m in late.wait_for(1)] == [b"offline"] and late.messages[0].retain
    finally:
        late.close()

    sub = Subscriber(broker.port, ["home/g/available"])
    config = MqttConfig(enabled=True, port=broker.port, topic_prefix="home/g")
    first, second = MqttPublisher(config), MqttPublisher(config)
    try:
        assert wait_until(lambda: first.connected and second.connected, 10)
        first.close()  # a clean goodbye while the other is still up: offline, then online again
        assert wait_until(lambda: [m.payload for m in sub.messages][-2:] == [b"offline", b"online"], 10), (
            sub.messages)
        second.close()
        assert wait_until(lambda: sub.messages[-1].payload == b"offline", 10), sub.messages
        assert first.published == second.published == 0  # availability is not counted as published
    finally:
        first.close(0.0)
        second.close(0.0)
        sub.close()
