"""MQTT transport: a publisher that never makes the pipeline wait (docs/mqtt.md).

The pipeline thread only appends to a bounded buffer (a few microseconds under a lock). A
background thread hands messages to paho-mqtt while the client is connected; paho's own network
thread connects, reconnects with backoff and keeps at most ``PAHO_QUEUE`` messages in flight.
While the broker is slow or away, events beyond ``mqtt.buffer_messages`` drop the oldest event
and retained state keeps only its latest value per topic; every drop is counted in
``genesis_mqtt_dropped_total{reason}``. The password is handed to paho and never logged.

Availability (``PREFIX/available``, retained): every connection registers a last will of
``offline`` (the broker publishes it when the process dies or its connection is lost), says
``online`` on each connect and ``offline`` when it closes. Several processes may publish (the
distributed workers): each one subscribes to the topic and says ``online`` again when another
one's ``offline`` arrives while it is still connected, so the topic reads ``online`` while any
publisher is up. These messages bypass the buffer and are not counted as published.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from genesis.config.mqtt import MqttConfig
from genesis.ops import metrics as m

log = logging.getLogger(__name__)

PAHO_QUEUE = 100
"""Messages handed to paho at most at once (in flight or waiting for the socket)."""
ONLINE, OFFLINE = b"online", b"offline"
"""The payloads of ``PREFIX/available``."""
_instances = itertools.count()


def availability_topic(config: MqttConfig) -> str:
    return f"{config.topic_prefix}/available"


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False


class MqttPublisher:
    """One broker connection per process; thread-safe ``publish`` that never blocks on the network."""

    def __init__(self, config: MqttConfig, name: str = "genesis") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.config = config
        self._mqtt = mqtt
        self._cond = threading.Condition()
        self._events: deque[Message] = deque()
        self._retained: dict[str, Message] = {}
        self._connected = False
        self._closing = False
        self._unacked = 0
        self._control: set[int] = set()
        """Message ids of the availability messages (not counted as published)."""
        self.available = availability_topic(config)
        self.published = 0
        self.dropped = 0
        prefix = config.client_id or name
        n = next(_instances)  # two connections may not share an id: the broker would drop the older one
        client_id = f"{prefix}-{socket.gethostname()}-{os.getpid()}{f'-{n}' if n else ''}"[-128:]
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                             clean_session=True)
        client.max_queued_messages_set(PAHO_QUEUE)
        client.max_inflight_messages_set(min(20, PAHO_QUEUE))
        client.reconnect_delay_set(max(1, math.floor(config.reconnect_min_s)),
                                   max(1, math.ceil(config.reconnect_max_s)))
        if config.username is not None:
            secret = config.password.get_secret_value() if config.password is not None else None
            client.username_pw_set(config.username, secret)
        if config.tls.enabled:
            tls = config.tls
            client.tls_set(
                ca_certs=str(tls.ca_file.expanduser()) if tls.ca_file else None,
                certfile=str(tls.cert_file.expanduser()) if tls.cert_file else None,
                keyfile=str(tls.key_file.expanduser()) if tls.key_file else None,
            )
            if tls.insecure:
                client.tls_insecure_set(True)
        # The broker says "offline" for us if this process dies (SIGKILL, power) or goes silent.
        client.will_set(self.available, OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client
        self._where = f"{config.host}:{config.port}"
        m.mqtt_connected(False)
        client.connect_async(config.host, config.port, keepalive=config.keepalive_s)
        client.loop_start()  # paho's network thread: connects, and reconnects with backoff
        self._thread = threading.Thread(target=self._send_loop, name="genesis-mqtt", daemon=True)
        self._thread.start()

    # -- the pipeline side -----------------------------------------------------------------------

    def publish(self, message: Message) -> None:
        """Queue a message; never waits. A retained message replaces the pending one of its topic."""
        with self._cond:
            if self._closing:
                self._drop("shutdown")
                return
            if message.retain:
                self._retained.pop(message.topic, None)  # keep the newest last
                self._retained[message.topic] = message
            else:
                if len(self._events) >= self.config.buffer_messages:
                    self._events.popleft()
                    self._drop("buffer_full")
                self._events.append(message)
            self._cond.notify()

    def publish_all(self, messages: Iterable[Message]) -> None:
        for msg in messages:
            self.publish(msg)

    @property
    def connected(self) -> bool:
        return self._connected

    def pending(self) -> int:
        with self._cond:
            return len(self._events) + len(self._retained)

    def close(self, timeout: float | None = None) -> None:
        """Flush while connected (at most ``timeout``, default ``flush_timeout_s``), then disconnect.

        Never waits for a broker that is away: what is left is counted as dropped (``shutdown``).
        """
        timeout = self.config.flush_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while self._connected and (self._events or self._retained or self._unacked > 0):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.05))
            left_over = len(self._events) + len(self._retained) + max(0, self._unacked)
            self._events.clear()
            self._retained.clear()
            self._unacked = 0
            if left_over:
                self._drop("shutdown", left_over)
            self._cond.notify_all()
            connected = self._connected
        if connected:  # a clean goodbye: the will is only for an unclean one
            with contextlib.suppress(Exception):
                self._client.unsubscribe(self.available)
                info = self._control_publish(OFFLINE)
                info.wait_for_publish(max(0.5, min(2.0, deadline - time.monotonic())))
        with contextlib.suppress(Exception):  # not connected: nothing to say goodbye to
            self._client.disconnect()
        # loop_stop joins paho's thread, which may sit in a connect attempt: never wait for it.
        threading.Thread(target=self._client.loop_stop, name="genesis-mqtt-stop", daemon=True).start()
        m.mqtt_connected(False)

    # -- availability ------------------------------------------------------------------------------

    def _control_publish(self, payload: bytes) -> Any:
        with self._cond:  # on_publish takes this lock too: the id is known before its ack is handled
            info = self._client.publish(self.available, payload, qos=1, retain=True)
            self._control.add(info.mid)
        return info

    def _on_message(self, client: object, userdata: object, msg: Any) -> None:
        """Another publisher said ``offline`` (it closed or died) while we are up: we are still here."""
        if msg.topic == self.available and bytes(msg.payload) == OFFLINE and self._connected and not self._closing:
            self._control_publish(ONLINE)

    # -- the background side ---------------------------------------------------------------------

    def _drop(self, reason: str, n: int = 1) -> None:
        self.dropped += n
        m.mqtt_dropped(reason, n)

    def _next(self) -> Message | None:
        """The next message to hand to paho (retained state first: it is the freshest news)."""
        with self._cond:
            while True:
                if self._closing and not self._connected:
                    return None
                if self._connected and (self._retained or self._events):
                    if self._retained:
                        topic = next(iter(self._retained))
                        return self._retained.pop(topic)
                    return self._events.popleft()
                if self._closing and not (self._retained or self._events):
                    return None
                self._cond.wait(0.5)

    def _requeue(self, message: Message) -> None:
        with self._cond:
            if message.retain:
                self._retained.setdefault(message.topic, message)
            else:
                self._events.appendleft(message)

    def _send_loop(self) -> None:
        mqtt = self._mqtt
        qos = self.config.qos
        while True:
            msg = self._next()
            if msg is None:
                return
            try:
                info = self._client.publish(msg.topic, msg.payload, qos=qos, retain=msg.retain)
                rc = info.rc
            except Exception as exc:  # a bad topic or payload: drop that message, keep going
                log.warning("mqtt: message to %s dropped: %s", msg.topic, exc)
                self._drop("error")
                continue
            if rc == mqtt.MQTT_ERR_SUCCESS or (rc == mqtt.MQTT_ERR_NO_CONN and qos > 0):
                # QoS > 0 without a connection: paho keeps it and sends it once reconnected.
                if qos > 0:
                    with self._cond:
                        self._unacked += 1
                continue
            # paho's queue is full, or QoS 0 found the connection gone: try again shortly.
            self._requeue(msg)
            time.sleep(0.02)

    def _on_connect(self, client: object, userdata: object, flags: object, reason: object,
                    properties: object = None) -> None:
        failed = bool(getattr(reason, "is_failure", False))
        if failed:
            log.warning("mqtt: broker %s refused the connection: %s", self._where, reason)
            return
        log.info("mqtt: connected to %s", self._where)
        with contextlib.suppress(Exception):
            self._control_publish(ONLINE)
            self._client.subscribe(self.available, qos=1)
        with self._cond:
            self._connected = True
            self._cond.notify_all()
        m.mqtt_connected(True)

    def _on_disconnect(self, client: object, userdata: object, flags: object, reason: object,
                       properties: object = None) -> None:
        with self._cond:
            was = self._connected
            self._connected = False
            self._cond.notify_all()
        m.mqtt_connected(False)
        if was and not self._closing:
            log.warning("mqtt: lost the connection to %s (%s); reconnecting", self._where, reason)

    def _on_publish(self, client: object, userdata: object, mid: int, reason: object = None,
                    properties: object = None) -> None:
        with self._cond:
            if mid in self._control:
                self._control.discard(mid)
                return
        self.published += 1
        m.mqtt_published()
        if self.config.qos > 0:
            with self._cond:
                self._unacked -= 1
                self._cond.notify_all()
