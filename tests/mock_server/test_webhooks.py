"""Webhooks from the mock, exactly as the service sends them: the openai SDK's ``webhooks.unwrap`` accepts every one,
retries keep their ``webhook-id``, and each webhook fault does what it says."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai.types.webhooks import UnwrapWebhookEvent

from mock_server import MockServer, ServerConfig

from ..conftest import FAST
from ..helpers import ROOT, ServerProcess, wait_until

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
_EVENT = pydantic.TypeAdapter(UnwrapWebhookEvent)


class Receiver:
    """A webhook endpoint on a free loopback port that records what it gets and answers the statuses it is told."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events(self) -> list[Any]:
        with openai.OpenAI(api_key="unused", webhook_secret=SECRET) as sdk:
            return [sdk.webhooks.unwrap(body, headers) for headers, body in self.deliveries]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def server(receiver: Receiver) -> Iterator[MockServer]:
    with MockServer(ServerConfig(options=FAST, webhook_urls=(receiver.url,), webhook_secret=SECRET)) as server:
        yield server


def create(server: MockServer | ServerProcess, **body: Any) -> str:
    answer = httpx.post(f"{server.url}/responses", json={"model": "o3", "input": "Hi", "background": True, **body},
                        timeout=10)
    answer.raise_for_status()
    return str(answer.json()["id"])


def test_every_terminal_status_is_sent_signed_and_unwrapped_by_the_sdk(server: MockServer,
                                                                      receiver: Receiver) -> None:
    ids = {
        "completed": create(server),
        "failed": create(server, metadata={"mock_faults": "fail_at=3"}),
        "incomplete": create(server, max_output_tokens=16, metadata={"mock_options": "tokens=40,tps=0"}),
        "cancelled": create(server, metadata={"mock_options": "tokens=400,tps=20"}),
    }
    httpx.post(f"{server.url}/responses/{ids['cancelled']}/cancel", timeout=10).raise_for_status()
    wait_until(lambda: len(receiver.deliveries) == 4, what="four webhooks")
    got = {event.type: event for event in receiver.events()}
    assert set(got) == {f"response.{status}" for status in ids}
    for status, response_id in ids.items():
        event = got[f"response.{status}"]
        assert event.data.id == response_id and event.object == "event" and event.id.startswith("evt_")
    for headers, body in receiver.deliveries:  # strictly the SDK's shape, with no field it does not know
        event = _EVENT.validate_python(json.loads(body))
        assert not event.model_extra and not event.data.model_extra
        assert headers["webhook-id"].startswith("wh_") and headers["content-type"] == "application/json"


def test_a_receiver_that_fails_gets_retries_with_the_same_webhook_id(server: MockServer, receiver: Receiver) -> None:
    receiver.answers = [500, 503]
    response_id = create(server)
    wait_until(lambda: len(receiver.deliveries) == 3, 15, "the third attempt")
    assert len({headers["webhook-id"] for headers, _ in receiver.deliveries}) == 1
    assert all(event.data.id == response_id for event in receiver.events())  # every attempt is correctly signed
    log = httpx.get(f"{server.base_url}/mock/webhooks", timeout=10).json()["deliveries"]
    assert (log[-1]["attempts"], log[-1]["outcome"]) == (3, 200)


def test_webhook_faults_duplicate_drop_reorder_and_forge(server: MockServer, receiver: Receiver) -> None:
    def configure(faults: str) -> None:
        httpx.put(f"{server.base_url}/mock/webhooks", json={"faults": faults}, timeout=10).raise_for_status()

    configure("duplicate")
    create(server)
    wait_until(lambda: len(receiver.deliveries) == 2, what="the duplicated delivery")
    assert receiver.deliveries[0][0]["webhook-id"] == receiver.deliveries[1][0]["webhook-id"]
    receiver.deliveries.clear()

    configure("drop=1")
    dropped = create(server)
    kept = create(server, metadata={"mock_options": "tokens=40,tps=200"})
    wait_until(lambda: len(receiver.deliveries) == 1, what="the delivery after the dropped one")
    assert [e.data.id for e in receiver.events()] == [kept] and dropped != kept
    log = httpx.get(f"{server.base_url}/mock/webhooks", timeout=10).json()["deliveries"]
    assert any(entry["outcome"] == "dropped" for entry in log)
    receiver.deliveries.clear()

    configure("reorder=1")
    first = create(server)
    wait_until(lambda: httpx.get(f"{server.url}/responses/{first}", timeout=10).json()["status"] == "completed",
               what="the first response to end")
    second = create(server)
    wait_until(lambda: len(receiver.deliveries) == 2, 10, "both deliveries")
    assert [e.data.id for e in receiver.events()] == [second, first]  # the later one overtook the held one
    receiver.deliveries.clear()

    configure("bad_signature")
    create(server)
    wait_until(lambda: len(receiver.deliveries) >= 1, what="the forged delivery")
    with pytest.raises(openai.InvalidWebhookSignatureError):
        receiver.events()


@pytest.mark.parametrize("body", [{"urls": "http://x"}, {"urls": ["ftp://x"]}, {"secret": ""},
                                  {"faults": "explode"}, {"faults": "delay=-1"}])
def test_bad_webhook_settings_are_a_400(server: MockServer, body: dict[str, Any]) -> None:
    answer = httpx.put(f"{server.base_url}/mock/webhooks", json=body, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["message"]


def test_the_command_line_flags_set_the_webhooks(receiver: Receiver) -> None:
    with ServerProcess("--webhook-url", receiver.url, "--webhook-secret", SECRET, "--tps", "0", "--ttft", "0",
                       "--queue-delay", "0") as server:
        response_id = create(server)
        wait_until(lambda: len(receiver.deliveries) == 1, what="the webhook")
    (event,) = receiver.events()
    assert (event.type, event.data.id) == ("response.completed", response_id)
    result = subprocess.run([sys.executable, "-m", "mock_server", "--webhook-faults", "explode"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Unknown webhook fault 'explode'" in result.stderr
