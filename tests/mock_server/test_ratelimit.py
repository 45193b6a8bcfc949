"""Per-key rate limits as the service applies them: the headers, the 429, the wait, and keys kept apart."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from mock_server import MockServer, ServerConfig
from mock_server.errors import APIError
from mock_server.ratelimit import RateLimiter, create_cost, format_duration

from ..conftest import FAST
from ..helpers import ROOT, ServerProcess
from .test_bad_input import assert_openai_error

DURATION = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+(\.\d{1,3})?s)$")
HEADERS = [f"x-ratelimit-{kind}-{budget}" for kind in ("limit", "remaining", "reset")
           for budget in ("requests", "tokens")]
BACKGROUND: dict[str, Any] = {"model": "o3", "input": "Hi", "background": True}


@pytest.fixture
def limited(request: pytest.FixtureRequest) -> Iterator[MockServer]:
    """A server of the test's own, with the limits of ``@pytest.mark.parametrize("limited", [(rpm, tpm)])``."""
    rpm, tpm = request.param
    with MockServer(ServerConfig(options=FAST, rate_limit_rpm=rpm, rate_limit_tpm=tpm)) as server:
        yield server


def sdk(server: MockServer, key: str = "sk-test-key", retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=retries, _strict_response_validation=True)


def creates(server: MockServer) -> int:
    return int(httpx.get(server.base_url + "/mock/health", timeout=10).json()["creates"])


def exhaust(client: openai.OpenAI, limit: int) -> tuple[int, openai.RateLimitError]:
    """Create responses until the budget is spent; the number created and the 429 that ended it."""
    for made in range(limit * 3):
        try:
            client.responses.create(**BACKGROUND)
        except openai.RateLimitError as exc:
            return made, exc
    raise AssertionError(f"no 429 after {limit * 3} requests")


# -- the wire format --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.12, "120ms"), (0.0004, "1ms"), (1, "1s"), (1.2, "1.2s"), (17.316, "17.316s"), (90.5, "1m30.5s"),
    (360, "6m0s"), (3600, "1h0m0s"), (3723.25, "1h2m3.25s"),
])
def test_durations_are_written_as_the_service_writes_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_create_costs_its_input_estimate_plus_its_output_budget() -> None:
    assert create_cost({"input": "Hi"}, 40) == 1 + 40  # '"Hi"' is 4 characters: 1 token
    assert create_cost({"input": "x" * 398, "max_output_tokens": 100}, 40) == 100 + 100
    assert create_cost({"input": "abcd", "instructions": "abcdefgh"}, 10) == 4 + 10  # ceil((6 + 8) / 4)
    assert create_cost({"max_output_tokens": True}, 7) == 1 + 7  # not an integer: the reply length is charged
    assert create_cost(None, 5) == 6


# -- the token bucket, on a clock of the test's own -------------------------------------------------------------

def test_the_bucket_refills_continuously_and_a_refusal_takes_nothing() -> None:
    now = [100.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    for _ in range(60):
        limiter.charge("k")
    assert dict(limiter.headers("k"))[b"x-ratelimit-reset-requests"] == b"1m0s"
    for _ in range(3):  # refused again and again: still one second to wait, nothing taken
        with pytest.raises(APIError) as refused:
            limiter.charge("k")
        assert refused.value.status == 429
        assert refused.value.headers["retry-after"] == "1" and refused.value.headers["retry-after-ms"] == "1000"
    now[0] += 0.5
    with pytest.raises(APIError) as refused:
        limiter.charge("k")
    assert refused.value.headers["retry-after-ms"] == "500"
    assert "Please try again in 500ms." in refused.value.message
    now[0] += 0.5
    limiter.charge("k")  # one request's worth has come back
    now[0] += 3600
    assert dict(limiter.headers("k"))[b"x-ratelimit-remaining-requests"] == b"60"  # never above the budget


def test_the_table_of_keys_forgets_the_least_recently_used() -> None:
    limiter = RateLimiter(60, max_keys=5)
    for i in range(50):
        limiter.charge(f"key{i}")
    limiter.charge("key45")
    for i in range(50, 54):
        limiter.charge(f"key{i}")
    kept = limiter.describe()["keys"]
    assert len(kept) == 5
    assert {k["remaining_requests"] for k in kept} == {59, 58}  # key45 (charged twice) is one of them


# -- through the official SDK -----------------------------------------------------------------------------------

@pytest.mark.parametrize("limited", [(6, 6000)], indirect=True)
def test_every_answer_carries_the_budget_and_the_remaining_count_goes_down(limited: MockServer) -> None:
    with sdk(limited) as client:
        first = client.responses.with_raw_response.create(**BACKGROUND, max_output_tokens=100)
        second = client.responses.with_raw_response.create(**BACKGROUND, max_output_tokens=100)
        for raw in (first, second):
            assert all(name in raw.headers for name in HEADERS), dict(raw.headers)
            assert raw.headers["x-ratelimit-limit-requests"] == "6"
            assert raw.headers["x-ratelimit-limit-tokens"] == "6000"
            assert DURATION.match(raw.headers["x-ratelimit-reset-requests"])
            assert DURATION.match(raw.headers["x-ratelimit-reset-tokens"])
        assert first.headers["x-ratelimit-remaining-requests"] == "5"  # 6 a minute refill one each 10 s
        assert second.headers["x-ratelimit-remaining-requests"] == "4"
        assert 6000 - 101 <= int(first.headers["x-ratelimit-remaining-tokens"]) < 6000  # 1 input + 100 output
        assert second.parse().status == "queued"
        # Errors and streams carry them too, the stream in its first headers.
        with pytest.raises(openai.NotFoundError) as missing:
            client.responses.retrieve("resp_missing")
        assert missing.value.response.headers["x-ratelimit-remaining-requests"] == "3"
        with client.responses.with_streaming_response.create(**BACKGROUND, stream=True) as streamed:
            assert streamed.headers["x-ratelimit-remaining-requests"] == "2"
            assert streamed.headers["content-type"].startswith("text/event-stream")
            assert any(event.type == "response.completed" for event in streamed.parse())


@pytest.mark.parametrize("limited", [(60, None)], indirect=True)
def test_a_spent_request_budget_is_a_429_that_creates_nothing_and_the_sdk_waits_it_out(limited: MockServer) -> None:
    with sdk(limited) as client:
        made, refused = exhaust(client, 60)
        assert made >= 60 and creates(limited) == made  # the refused create made nothing
        assert refused.status_code == 429
        headers = refused.response.headers
        assert int(headers["retry-after"]) >= 1 and 0 < int(headers["retry-after-ms"]) <= 1000
        assert headers["x-ratelimit-remaining-requests"] == "0" and "x-ratelimit-limit-tokens" not in headers
        error = assert_openai_error(refused.response, 429, message="on requests per min (RPM): Limit 60, Used")
        assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded" and error["param"] is None
        assert re.search(r"Rate limit reached for requests .*Requested 1\. Please try again in \d+(\.\d+)?m?s\.$",
                         error["message"]), error["message"]
    with sdk(limited, retries=2) as patient:  # the SDK honours retry-after-ms, and then the budget is there
        assert patient.responses.create(**BACKGROUND).status == "queued"
    assert creates(limited) == made + 1


@pytest.mark.parametrize("limited", [(None, 1000)], indirect=True)
def test_a_spent_token_budget_is_a_429_of_type_tokens(limited: MockServer) -> None:
    with sdk(limited) as client:
        first = client.responses.with_raw_response.create(**BACKGROUND, max_output_tokens=600)
        assert 399 <= int(first.headers["x-ratelimit-remaining-tokens"]) < 500
        assert "x-ratelimit-limit-requests" not in first.headers
        with pytest.raises(openai.RateLimitError) as refused:  # 202 more tokens take 12 s to come back
            client.responses.create(**BACKGROUND, max_output_tokens=600)
        error = refused.value.body
        assert isinstance(error, dict) and error["type"] == "tokens" and error["code"] == "rate_limit_exceeded"
        assert re.search(r"on tokens per min \(TPM\): Limit 1000, Used \d+, Requested 601\. Please try again in",
                         error["message"])
        assert int(refused.value.response.headers["retry-after"]) >= 5
        assert creates(limited) == 1
    # A create answered with an error (here: no model) gets its 301 tokens back.
    bad = httpx.post(limited.url + "/responses", json={"input": "x", "max_output_tokens": 300}, timeout=10)
    assert_openai_error(bad, 400, param="model")
    assert int(bad.headers["x-ratelimit-remaining-tokens"]) >= 399


@pytest.mark.parametrize("limited", [(None, 1000)], indirect=True)
def test_a_create_larger_than_the_whole_budget_is_refused_without_a_retry(limited: MockServer) -> None:
    with sdk(limited, retries=2) as client, pytest.raises(openai.RateLimitError) as refused:
        client.responses.create(**BACKGROUND, max_output_tokens=5000)
    headers = refused.value.response.headers
    assert headers["x-should-retry"] == "false" and "retry-after" not in headers
    assert "Request too large for tokens" in refused.value.message and "Requested 5001" in refused.value.message
    assert creates(limited) == 0


@pytest.mark.parametrize("limited", [(3, None)], indirect=True)
def test_keys_have_budgets_of_their_own_and_are_never_shown(limited: MockServer) -> None:
    secret_a, secret_b = "sk-alpha-0123456789-secret", "sk-bravo-9876543210-secret"
    with sdk(limited, key=secret_a) as alpha, sdk(limited, key=secret_b) as bravo:
        exhaust(alpha, 3)  # and one request comes back only after 20 s
        fine = bravo.models.with_raw_response.list()
        assert fine.headers["x-ratelimit-remaining-requests"] == "2"
        with pytest.raises(openai.RateLimitError):
            alpha.models.list()
    with httpx.Client(timeout=10) as http:
        anonymous = http.get(limited.url + "/models")  # no key: the shared anonymous bucket
        assert anonymous.headers["x-ratelimit-remaining-requests"] == "2"
        state = http.get(limited.base_url + "/mock/rate_limits")
    assert state.status_code == 200
    assert secret_a not in state.text and secret_b not in state.text and "alpha" not in state.text
    shown = {k["fingerprint"]: k for k in state.json()["keys"]}
    fingerprint = {s: "sha256:" + hashlib.sha256(s.encode()).hexdigest()[:8] for s in (secret_a, secret_b)}
    assert set(shown) == {fingerprint[secret_a], fingerprint[secret_b], "anonymous"}
    assert shown[fingerprint[secret_a]]["remaining_requests"] == 0
    assert shown[fingerprint[secret_b]]["remaining_requests"] == 2
    assert state.json()["requests_per_minute"] == 3 and state.json()["tokens_per_minute"] is None


def test_limits_are_set_shown_and_removed_at_run_time(fresh_mock: MockServer) -> None:
    with httpx.Client(base_url=fresh_mock.base_url, timeout=10) as http:
        assert not any(name in http.get("/v1/models").headers for name in HEADERS)  # unlimited: no headers
        fresh_mock.set_rate_limits(requests_per_minute=100, tokens_per_minute=50_000)
        for _ in range(5):  # control endpoints never count
            http.get("/mock/health")
            http.get("/mock/rate_limits")
        answer = http.get("/v1/models")
        assert answer.headers["x-ratelimit-limit-requests"] == "100"
        assert answer.headers["x-ratelimit-remaining-requests"] == "99"
        assert answer.headers["x-ratelimit-limit-tokens"] == "50000"
        assert http.put("/mock/rate_limits", json={"requests_per_minute": 0}).json()["requests_per_minute"] is None
        deleted = http.delete("/mock/rate_limits").json()
        assert deleted == {"requests_per_minute": None, "tokens_per_minute": None, "max_keys": 10_000, "keys": []}
        assert not any(name in http.get("/v1/models").headers for name in HEADERS)


@pytest.mark.parametrize(("body", "param", "message"), [
    ({"requests_per_minute": -1}, "requests_per_minute", "between 0 (unlimited)"),
    ({"tokens_per_minute": "lots"}, "tokens_per_minute", "expected an integer or null, but got a string"),
    ({"requests_per_minute": 1.5}, "requests_per_minute", "but got a decimal"),
    ({"tokens_per_minute": True}, "tokens_per_minute", "but got a boolean"),
    ({"requests_per_minute": 10**13}, "requests_per_minute", "between 0 (unlimited)"),
    ({"rpm": 3}, "rpm", "Unknown parameter: 'rpm'"),
])
def test_a_bad_limit_is_a_400_naming_the_parameter(fresh_mock: MockServer, body: dict[str, Any], param: str,
                                                   message: str) -> None:
    fresh_mock.set_rate_limits(requests_per_minute=7)
    with httpx.Client(base_url=fresh_mock.base_url, timeout=10) as http:
        assert_openai_error(http.put("/mock/rate_limits", json=body), 400, param=param, message=message)
        assert_openai_error(http.put("/mock/rate_limits", json=[1]), 400, message="JSON object")
        assert http.get("/mock/rate_limits").json()["requests_per_minute"] == 7  # unchanged


def test_a_request_without_an_accepted_key_costs_nothing() -> None:
    config = ServerConfig(options=FAST, api_key="sk-right", rate_limit_rpm=60)
    with MockServer(config) as server, httpx.Client(timeout=10) as http:
        for _ in range(5):
            denied = http.get(server.url + "/models", headers={"Authorization": "Bearer sk-wrong"})
            assert denied.status_code == 401 and "x-ratelimit-limit-requests" not in denied.headers
        ok = http.get(server.url + "/models", headers={"Authorization": "Bearer sk-right"})
        assert ok.headers["x-ratelimit-remaining-requests"] == "59"
        assert "sk-right" not in http.get(server.base_url + "/mock/rate_limits",
                                          headers={"Authorization": "Bearer sk-right"}).text


def test_rate_limit_flags() -> None:
    with ServerProcess("--rate-limit-rpm", "7", "--rate-limit-tpm", "5000") as server:
        answer = httpx.get(server.url + "/models", timeout=10)
        assert answer.headers["x-ratelimit-limit-requests"] == "7"
        assert answer.headers["x-ratelimit-limit-tokens"] == "5000"
    result = subprocess.run([sys.executable, "-m", "mock_server", "--rate-limit-rpm", "-1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--rate-limit-rpm must be between 0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
