"""herald and the CloudEvents Python SDK, both ways, on the real broker.

Producers build events with the SDK and send them every way herald reads
CloudEvents: HTTP structured and batched, the SDK's RabbitMQ binding in binary
and structured mode, and its AMQP 1.0 binding's application properties as
headers. Two subscriptions get each event back as a CloudEvent (structured
and binary); the receiver parses every delivery with the SDK's HTTP binding
and verifies its signature with the Standard Webhooks library.

Usage: check_interop.py HERALD_BINARY PREFIX. Exits 1 on the first mismatch.
"""

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pika
from cloudevents.core.bindings import amqp, http, rabbitmq
from cloudevents.core.bindings.http import HTTPMessage
from cloudevents.core.v1.event import CloudEvent
from standardwebhooks.webhooks import Webhook

TOKEN = "interop-token-0123456789"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"
SENT_TYPE = "com.Example.Order.Created"
# herald's type rules: lowercase, foreign characters as '-'.
HERALD_TYPE = "com.example.order.created"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver(BaseHTTPRequestHandler):
    deliveries: "queue.Queue[tuple[str, dict[str, str], bytes]]" = queue.Queue()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.deliveries.put((self.path, dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class Herald:
    def __init__(self, binary: str, prefix: str) -> None:
        self.port = free_port()
        env = dict(
            os.environ,
            HERALD__AMQP__PREFIX=prefix,
            HERALD__REDIS__PREFIX=prefix,
            HERALD__API__LISTEN=f"127.0.0.1:{self.port}",
            HERALD__API__TOKEN=TOKEN,
            HERALD__DELIVERY__ALLOW_PRIVATE_TARGETS="true",
        )
        self.log = open(f"target/{prefix}.log", "wb")
        self.process = subprocess.Popen(
            [binary, "serve"], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url("/readyz"), timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"herald did not become ready; see {self.log.name}")
            time.sleep(0.2)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def call(self, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json") -> tuple[int, dict]:
        request = urllib.request.Request(self.url(path), data=body, method=method)
        request.add_header("authorization", f"Bearer {TOKEN}")
        request.add_header("content-type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=40)
        self.log.close()


def event(n: int) -> CloudEvent:
    return CloudEvent(
        attributes={
            "id": f"order-{n}",
            "source": "/shop/orders",
            "type": SENT_TYPE,
            "subject": f"order/{n}",
            "time": datetime(2026, 11, 29, 10, 0, n, tzinfo=timezone.utc),
            "datacontenttype": "application/json",
            "tenant": "acme",
        },
        data={"n": n, "items": ["book", "pen"], "total": 12.5},
    )


def publish_amqp(channel, exchange: str, headers: dict, content_type, body: bytes) -> None:
    channel.basic_publish(
        exchange=exchange,
        routing_key=HERALD_TYPE,
        body=body,
        properties=pika.BasicProperties(
            headers=headers, content_type=content_type, delivery_mode=2
        ),
        mandatory=True,
    )


def produce(herald: Herald, exchange: str) -> list[str]:
    """Sends events 1..6, each a different way; returns how each went."""
    ways = []

    message = http.to_structured_event(event(1))
    status, reply = herald.call("POST", "/v1/events", message.body,
                                message.headers["content-type"])
    assert status == 202, (status, reply)
    ways.append("1: HTTP structured (application/cloudevents+json)")

    batch = b"[" + b",".join(http.to_structured_event(event(n)).body for n in (2, 3)) + b"]"
    status, reply = herald.call("POST", "/v1/events", batch,
                                "application/cloudevents-batch+json")
    assert status == 202 and reply["ids"] == ["order-2", "order-3"], (status, reply)
    ways.append("2, 3: HTTP batch (application/cloudevents-batch+json)")

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.confirm_delivery()
    message = rabbitmq.to_binary_event(event(4))
    publish_amqp(channel, exchange, message.headers, message.content_type, message.body)
    ways.append("4: AMQP binary, the SDK's RabbitMQ binding (ce- headers)")
    message = rabbitmq.to_structured_event(event(5))
    publish_amqp(channel, exchange, message.headers, message.content_type, message.body)
    ways.append("5: AMQP structured, the SDK's RabbitMQ binding")
    message = amqp.to_binary_event(event(6))
    content_type = message.properties.get("content-type") or message.properties.get("content_type")
    publish_amqp(channel, exchange, message.application_properties, content_type,
                 message.application_data)
    ways.append("6: AMQP binary, the SDK's AMQP 1.0 binding (cloudEvents_ properties as headers)")
    connection.close()
    return ways


def check_delivery(path: str, headers: dict[str, str], body: bytes, secrets: dict) -> int:
    mode = path.strip("/")
    Webhook(secrets[mode]).verify(body, headers)
    received = http.from_http_event(HTTPMessage(headers={k.lower(): v for k, v in headers.items()},
                                                body=body))
    n = int(received.get_id().removeprefix("order-"))
    expected = event(n)
    got = {
        "id": received.get_id(),
        "source": received.get_source(),
        "type": received.get_type(),
        "subject": received.get_subject(),
        "time": received.get_time(),
        "tenant": received.get_extension("tenant"),
        "data": received.get_data() if isinstance(received.get_data(), dict)
        else json.loads(received.get_data()),
    }
    want = {
        "id": expected.get_id(),
        "source": expected.get_source(),
        "type": HERALD_TYPE,
        "subject": expected.get_subject(),
        "time": expected.get_time(),
        "tenant": "acme",
        "data": expected.get_data(),
    }
    if got != want:
        raise AssertionError(f"{mode} delivery of order-{n}:\n got  {got}\n want {want}")
    return n


def main() -> int:
    binary, prefix = sys.argv[1], sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_address[1]}"

    herald = Herald(binary, prefix)
    try:
        secrets = {}
        for mode in ("structured", "binary"):
            sub = {"name": f"ce-{mode}", "url": f"{hook}/{mode}", "events": ["com.example.*"],
                   "selector": "tenant=acme", "format": "cloudevents", "cloudevents_mode": mode}
            status, reply = herald.call("POST", "/v1/subscriptions", json.dumps(sub).encode())
            assert status == 201, (status, reply)
            status, reply = herald.call("GET", f"/v1/subscriptions/ce-{mode}/secret")
            secrets[mode] = reply["secret"]
        # The worker's snapshot follows the store within its refresh interval.
        deadline = time.monotonic() + 10
        while True:
            status, ready = herald.call("GET", "/readyz")
            if status == 200 and ready.get("subscriptions", 0) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)

        for way in produce(herald, f"{prefix}.events"):
            print(f"sent {way}")
        seen = {"structured": set(), "binary": set()}
        for _ in range(12):
            path, headers, body = Receiver.deliveries.get(timeout=20)
            seen[path.strip("/")].add(check_delivery(path, headers, body, secrets))
        for mode, ns in seen.items():
            assert ns == {1, 2, 3, 4, 5, 6}, f"{mode} deliveries: {sorted(ns)}"
            print(f"received orders 1-6 as {mode} CloudEvents: parsed by the SDK, signatures verified")
        return 0
    finally:
        herald.stop()
        server.shutdown()
        # Queues and Redis keys are the calling script's to delete; exchanges are not listed there.
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        for exchange in ("events", "outcomes"):
            connection.channel().exchange_delete(f"{prefix}.{exchange}")
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
