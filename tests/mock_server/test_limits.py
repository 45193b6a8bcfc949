"""No input can crash, stall or bloat the mock server: text that is not Unicode, deep nesting, huge bodies and
replies, non-finite numbers in fault specs. Each gets a 4xx naming the problem, and the server keeps serving."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from mock_server import MockServer, ServerConfig, create_app
from mock_server.limits import Limits

from ..conftest import FAST
from .test_bad_input import assert_openai_error

LONE = "\ud800"


def _post(http: httpx.Client, body: str) -> httpx.Response:
    return http.post("/v1/responses", content=body.encode("utf-8", "surrogatepass"),
                     headers={"content-type": "application/json"})


def _raw(value: Any) -> str:
    """JSON spelling ``\\ud800`` as the escape a client sends (``json.dumps`` keeps it escaped)."""
    return json.dumps(value)


def _responses(http: httpx.Client) -> int:
    return int(http.get("/mock/health").json()["responses"])


@pytest.mark.parametrize(("body", "param"), [
    ({"model": f"o3{LONE}", "input": "x"}, "model"),
    ({"model": "o3", "input": "x", "instructions": f"be {LONE} brief"}, "instructions"),
    ({"model": "o3", "input": f"hello {LONE}"}, "input"),
    ({"model": "o3", "input": [{"role": "user", "content": [{"type": "input_text", "text": LONE}]}]},
     "input[0].content[0].text"),
    ({"model": "o3", "input": "x", "metadata": {"k": LONE}}, "metadata.k"),
    ({"model": "o3", "input": "x", "metadata": {"mock_reply": f"{LONE}!"}}, "metadata.mock_reply"),
    ({"model": "o3", "input": "x", "metadata": {f"k{LONE}": "v"}}, "metadata"),
    ({"model": "o3", "input": "x", "tools": [{"type": "function", "name": "f", "description": "\udfff"}]},
     "tools[0].description"),
])
@pytest.mark.parametrize("background", [False, True])
def test_a_lone_surrogate_is_a_400_naming_the_parameter(http: httpx.Client, body: dict[str, Any], param: str,
                                                        background: bool) -> None:
    before = _responses(http)
    response = _post(http, _raw({**body, "background": background}))
    error = assert_openai_error(response, 400, param=param, message="lone UTF-16 surrogate")
    assert "\\u" in error["message"] and error["code"] == "invalid_value"
    assert _responses(http) == before, "a rejected request must not leave a response behind"
    assert http.post("/v1/responses", json={"model": "o3", "input": "fine", "metadata": {
        "mock_options": "tokens=3,tps=0,ttft=0"}}).json()["status"] == "completed"


def test_a_surrogate_pair_is_ordinary_text(http: httpx.Client) -> None:
    response = _post(http, '{"model": "o3", "input": "x", "metadata": {"mock_reply": "\\ud83d\\ude80 go"}}')
    assert response.status_code == 200, response.text
    assert response.json()["output"][0]["content"][0]["text"] == "🚀 go"


@pytest.mark.parametrize("depth", [101, 990, 5000])
def test_json_nested_too_deeply_is_a_400(http: httpx.Client, depth: int) -> None:
    body = '{"model": "o3", "input": "x", "tools": ' + "[" * depth + "]" * depth + "}"
    assert_openai_error(_post(http, body), 400, message="nested too deeply")
    assert_openai_error(http.put("/mock/faults", content="[" * 3000 + "]" * 3000), 400, message="nested too deeply")
    assert http.get("/v1/models").status_code == 200


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "3601"])
@pytest.mark.parametrize("key", ["retry_after", "stall", "slow_first_token"])
def test_non_finite_or_huge_seconds_in_a_fault_spec_are_a_400(fresh_mock: MockServer, key: str, value: str) -> None:
    with httpx.Client(base_url=fresh_mock.base_url, timeout=10) as http:
        assert_openai_error(http.put("/mock/faults", json={"faults": f"http_429=1,{key}={value}"}), 400,
                            param="faults", message=f"'{key}'")
        assert http.get("/mock/faults").json() == {"faults": ""}
        assert_openai_error(http.post("/v1/responses", json={"model": "o3", "input": "x", "metadata": {
            "mock_faults": f"{key}={value}"}}), 400, param="metadata.mock_faults")
        assert_openai_error(http.get("/v1/models", headers={"X-Mock-Faults": f"http_503=1,{key}={value}"}), 400,
                            param="X-Mock-Faults")
        assert http.get("/v1/models").status_code == 200


@pytest.mark.parametrize("option", ["tps=nan", "ttft=inf", "queue_delay=1e400", "ttft=7200"])
def test_non_finite_pacing_options_are_a_400(http: httpx.Client, option: str) -> None:
    assert_openai_error(http.post("/v1/responses", json={"model": "o3", "input": "x", "metadata": {
        "mock_options": option}}), 400, param="metadata.mock_options")


def test_a_reply_longer_than_the_limit_is_a_400_before_any_work(http: httpx.Client) -> None:
    error = assert_openai_error(http.post("/v1/responses", json={"model": "o3", "input": "x", "background": True,
                                                                 "metadata": {"mock_options": "tokens=3000000"}}),
                                400, param="metadata.mock_options", message="--max-tokens")
    assert "200,000" in error["message"]


def test_a_body_larger_than_the_limit_is_a_413_and_later_requests_are_unaffected() -> None:
    config = ServerConfig(options=FAST, limits=Limits(max_body_bytes=64 * 1024))
    with MockServer(config) as server, httpx.Client(base_url=server.base_url, timeout=30) as http:
        huge = {"model": "o3", "input": "x", "instructions": "y" * 200_000, "background": True}
        error = assert_openai_error(http.post("/v1/responses", json=huge), 413, message="--max-body-bytes")
        assert error["code"] == "request_too_large"

        def chunks() -> Any:  # no Content-Length: the limit still holds while the body streams in
            yield b'{"model": "o3", "input": "'
            for _ in range(100):
                yield b"z" * 4096
            yield b'"}'

        assert_openai_error(http.post("/v1/responses", content=chunks()), 413)
        assert _responses(http) == 0
        small = http.post("/v1/responses", json={"model": "o3", "input": "x"})
        assert small.status_code == 200 and small.json()["status"] == "completed"


def test_fault_counts_of_distinct_requests_are_remembered_only_up_to_the_limit() -> None:
    config = ServerConfig(options=FAST, limits=Limits(tracked_requests=5))
    app = create_app(config)
    with TestClient(app) as http:
        for i in range(50):
            assert http.get(f"/v1/models/m{i}", headers={"X-Mock-Faults": "http_500=1"}).status_code == 500
        tracked = app.state.service.http_faults.requests
        assert len(tracked) == 5
        # The newest are the ones remembered: they stay used up, so a retry of one of them succeeds.
        assert http.get("/v1/models/m49", headers={"X-Mock-Faults": "http_500=1"}).status_code == 200


def test_random_hostile_bodies_never_get_a_5xx(http: httpx.Client) -> None:
    rng = random.Random(7)
    nasty: list[Any] = [LONE, "\udc80x", "\x00", "\u202e", "💥" * 50, "", None, True, -1, 2**70, 1e308, [], {},
                        [[[]]], {"": ""}, "a" * 5000, "\ufeff", "e\u0301"]
    fields = ["model", "input", "instructions", "metadata", "background", "stream", "store",
              "previous_response_id", "max_output_tokens", "tools", "reasoning", "include"]
    for _ in range(400):
        body = {name: rng.choice(nasty) for name in rng.sample(fields, rng.randint(1, len(fields)))}
        if rng.random() < 0.5:
            body["model"] = "o3"
        if rng.random() < 0.3:
            body["metadata"] = {"mock_options": rng.choice(["tokens=2,tps=0,ttft=0", "tps=nan", LONE, "x=1"]),
                                "mock_faults": rng.choice(["", "retry_after=inf", "split=1", f"drop_after={LONE}"])}
        response = _post(http, json.dumps(body))
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert http.get("/mock/health").json()["status"] == "ok"
