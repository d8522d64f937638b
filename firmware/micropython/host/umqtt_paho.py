"""``umqtt.simple.MQTTClient``'s API over paho-mqtt, so the port's MqttLink runs unchanged on a PC.

Semantics kept from umqtt.simple: ``connect`` blocks until CONNACK (or raises OSError), ``publish`` at QoS 1
blocks until the PUBACK (or raises OSError), ``check_msg`` delivers the messages received so far to the
callback in the caller's thread. paho's network thread does the socket work. CPython only.
"""

import queue
import threading
import time

import paho.mqtt.client as mqtt


class MQTTClient:
    def __init__(self, client_id, server, port=1883, user=None, password=None, keepalive=30, ssl=None,
                 timeout: float = 10.0):
        self.client_id = _text(client_id)
        self.server = _text(server)
        self.port = port or 1883
        self.keepalive = keepalive or 60
        self.timeout = timeout
        self._cb = None
        self._will = None
        self._inbox = queue.Queue()
        self._connected = threading.Event()
        self._lost = threading.Event()
        self._rc = None
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                   protocol=mqtt.MQTTv311, clean_session=True)
        if user is not None:
            self._client.username_pw_set(_text(user), _text(password) if password is not None else None)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # paho callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._rc = reason_code
        if not reason_code.is_failure:
            self._connected.set()
        else:
            self._lost.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        self._lost.set()

    def _on_message(self, client, userdata, message):
        self._inbox.put((message.topic.encode(), bytes(message.payload)))

    # umqtt.simple API
    def set_callback(self, f):
        self._cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self._client.will_set(_text(topic), bytes(msg) if isinstance(msg, (bytes, bytearray)) else msg, qos, retain)

    def connect(self, clean_session=True, timeout=None):
        self._lost.clear()
        try:
            self._client.connect(self.server, self.port, self.keepalive)
        except OSError:
            raise
        except Exception as exc:  # paho raises a few non-OSError types for bad hosts
            raise OSError(str(exc)) from exc
        self._client.loop_start()
        end = time.monotonic() + (timeout or self.timeout)
        while not self._connected.wait(0.02):
            if self._lost.is_set() or time.monotonic() > end:
                self._client.loop_stop()
                raise OSError(f"MQTT connect failed: {self._rc}")
        return 0

    def kill(self):
        """Drop the connection without a DISCONNECT, as a crashed board would: the broker sends the will."""
        sock = self._client.socket()
        self._client.loop_stop()
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()
        self._connected.clear()

    def _check(self):
        if not self._connected.is_set():
            raise OSError("MQTT connection lost")

    def disconnect(self):
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
            self._connected.clear()

    def subscribe(self, topic, qos=0):
        self._check()
        rc, _ = self._client.subscribe(_text(topic), qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise OSError(f"subscribe failed: {rc}")

    def publish(self, topic, msg, retain=False, qos=0):
        self._check()
        info = self._client.publish(_text(topic), bytes(msg) if isinstance(msg, (bytes, bytearray)) else msg, qos,
                                    retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise OSError(f"publish failed: {info.rc}")
        if qos:
            # umqtt.simple waits for the PUBACK; so do we, but give up when the connection drops
            while True:
                try:
                    info.wait_for_publish(0.05)
                except (RuntimeError, ValueError) as exc:
                    raise OSError(str(exc)) from exc
                if info.is_published():
                    return
                if not self._connected.is_set():
                    raise OSError("MQTT connection lost before PUBACK")

    def check_msg(self):
        self._check()
        while True:
            try:
                topic, payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            if self._cb is not None:
                self._cb(topic, payload)

    def wait_msg(self):
        self._check()
        topic, payload = self._inbox.get()
        if self._cb is not None:
            self._cb(topic, payload)

    def ping(self):
        self._check()


def _text(value):
    return bytes(value).decode() if isinstance(value, (bytes, bytearray)) else value
