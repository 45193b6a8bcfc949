"""The ``*_rate`` faults of large batch tests: a fraction of responses fail, of streams drop, of requests get 429."""

from __future__ import annotations

import subprocess
import sys

import httpx
import openai
import pytest

from mock_server import FaultSpec, MockServer

from ..helpers import ROOT, ServerProcess
from .test_background import collect, poll, read_until
from .test_bad_input import assert_openai_error

OPTS = "tokens=30,tps=0,ttft=0,queue_delay=0"


def resume_to_the_end(client: openai.OpenAI, faults: str) -> tuple[str, list[int], list[int], str]:
    """Stream a response through every drop, resuming with ``starting_after``.

    Returns the text, the sequence numbers seen, the number of events each connection carried, and the final
    response's id (the stream must end with its terminal event).
    """
    stream = client.responses.create(model="o3", input="Batch item", background=True, stream=True,
                                     metadata={"mock_options": OPTS, "mock_faults": faults})
    text, seqs, per_connection, final = "", [], [], None
    response_id = None
    while final is None:
        count = 0
        try:
            for event in stream:
                seqs.append(event.sequence_number)
                count += 1
                if event.type == "response.created":
                    response_id = event.response.id
                elif event.type == "response.output_text.delta":
                    text += event.delta
                elif event.type in ("response.completed", "response.failed", "response.incomplete"):
                    final = event.response
        except openai.APIConnectionError:
            pass
        per_connection.append(count)
        assert response_id is not None and len(per_connection) < 50
        if final is None:
            stream = client.responses.retrieve(response_id, stream=True, starting_after=seqs[-1])
    assert text == final.output_text
    return text, seqs, per_connection, final.id


def test_fail_rate_fails_about_that_fraction_and_always_the_same_responses(client: openai.OpenAI) -> None:
    faults = "fail_rate=0.5"
    ids = [client.responses.create(model="o3", input=f"Item {i}", background=True,
                                   metadata={"mock_options": OPTS, "mock_faults": faults}).id for i in range(40)]
    outcome = {response_id: poll(client, response_id).status for response_id in ids}
    failed = [i for i, status in outcome.items() if status == "failed"]
    assert set(outcome.values()) <= {"completed", "failed"}
    assert 8 <= len(failed) <= 32, f"{len(failed)} of 40 failed"
    spec = FaultSpec.parse(faults)
    for response_id, status in outcome.items():  # which ones is a function of the id alone
        assert (spec.fail_index(response_id, 100) is not None) == (status == "failed")
        again = client.responses.retrieve(response_id)
        assert again.status == status
        if status == "failed":
            assert again.error is not None and again.error.code == "server_error"
    # A replay of a failed response fails at the same event as the first time.
    _, seqs, final = collect(client.responses.retrieve(failed[0], stream=True))
    _, seqs_again, _ = collect(client.responses.retrieve(failed[0], stream=True))
    assert final is not None and final.status == "failed" and seqs == seqs_again


def test_drop_rate_drops_some_streams_and_the_sdk_resumes_them_with_starting_after(client: openai.OpenAI) -> None:
    dropped = 0
    for _ in range(20):
        _, seqs, per_connection, response_id = resume_to_the_end(client, "drop_rate=0.5")
        assert seqs == list(range(len(seqs)))  # every event exactly once, across the connections
        assert all(count >= 1 for count in per_connection)  # a drop always leaves progress behind
        dropped += len(per_connection) - 1
        planned = FaultSpec.parse("drop_rate=0.5").drop_after_for(response_id, 0, len(seqs))
        assert per_connection[0] == (len(seqs) if planned is None else planned)  # the point is the id's
    assert dropped > 0


def test_drop_rate_one_drops_every_connection_and_the_stream_still_completes(client: openai.OpenAI) -> None:
    _, seqs, per_connection, _ = resume_to_the_end(client, "drop_rate=1")
    assert len(per_connection) >= 2 and per_connection[-1] >= 1
    assert seqs == list(range(len(seqs)))


def test_http_429_rate_answers_some_requests_429_and_retries_get_through(fresh_mock: MockServer) -> None:
    fresh_mock.set_faults("http_429_rate=0.5,retry_after=0.01")
    assert httpx.get(fresh_mock.base_url + "/mock/faults").json() == {
        "faults": "retry_after=0.01,http_429_rate=0.5"}
    refused = 0
    with openai.OpenAI(base_url=fresh_mock.url, api_key="k", max_retries=0) as impatient:
        for _ in range(40):
            try:
                impatient.models.list()
            except openai.RateLimitError as exc:
                refused += 1
                assert exc.response.headers["retry-after"] == "1"
                assert exc.response.headers["retry-after-ms"] == "10"
                assert_openai_error(exc.response, 429, message="mock fault")
    assert 8 <= refused <= 32, f"{refused} of 40 refused"
    fresh_mock.set_faults("http_429_rate=0.2,retry_after=0.01")
    with openai.OpenAI(base_url=fresh_mock.url, api_key="k", max_retries=8) as patient:
        for _ in range(10):
            assert patient.models.list().data


def test_http_429_rate_in_a_header_or_metadata(client: openai.OpenAI) -> None:
    header = {"X-Mock-Faults": "http_429_rate=0.5,retry_after=0.01"}
    outcomes = []
    for _ in range(30):
        try:
            client.models.list(extra_headers=header)
            outcomes.append(200)
        except openai.RateLimitError:
            outcomes.append(429)
    assert 200 in outcomes and 429 in outcomes
    # In metadata it fails the follow-up requests about the response, never the create.
    created = client.responses.create(model="o3", input="x", background=True, metadata={
        "mock_options": OPTS, "mock_faults": "http_429_rate=0.5,retry_after=0.01"})
    polls = []
    for _ in range(30):
        try:
            polls.append(client.responses.retrieve(created.id).status)
        except openai.RateLimitError:
            polls.append("429")
    assert "429" in polls and any(p != "429" for p in polls)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "inf"])
@pytest.mark.parametrize("key", ["fail_rate", "drop_rate", "http_429_rate"])
def test_a_rate_outside_zero_to_one_is_a_400_naming_the_key(fresh_mock: MockServer, key: str, value: str) -> None:
    message = f"mock fault '{key}'"
    with httpx.Client(base_url=fresh_mock.base_url, timeout=10) as http:
        error = assert_openai_error(http.put("/mock/faults", json={"faults": f"{key}={value}"}), 400, param="faults",
                                    message=message)
        assert "expected a probability between 0 and 1" in error["message"]
        assert_openai_error(http.post("/v1/responses", json={"model": "o3", "input": "x", "metadata": {
            "mock_faults": f"{key}={value}"}}), 400, param="metadata.mock_faults", message=message)
        assert_openai_error(http.get("/v1/models", headers={"X-Mock-Faults": f"{key}={value}"}), 400,
                            param="X-Mock-Faults", message=message)
        assert http.get("/mock/faults").json() == {"faults": ""}


def test_a_rate_reads_back_exactly_from_its_text() -> None:
    spec = FaultSpec.parse("fail_rate=0.123456789,drop_rate=0.25,http_429_rate=1")
    assert str(spec) == "fail_rate=0.123456789,drop_rate=0.25,http_429_rate=1"
    assert FaultSpec.parse(str(spec)) == spec


def test_rate_flags() -> None:
    with ServerProcess("--fail-rate", "1", "--tokens", "5", "--tps", "0", "--ttft", "0") as server, \
            openai.OpenAI(base_url=server.url, api_key="k", max_retries=0) as sdk:
        assert httpx.get(f"http://127.0.0.1:{server.port}/mock/faults").json() == {"faults": "fail_rate=1"}
        _, _, final = collect(sdk.responses.create(model="o3", input="x", background=True, stream=True))
        assert final is not None and final.status == "failed"
    result = subprocess.run([sys.executable, "-m", "mock_server", "--drop-rate", "2"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "'drop_rate'" in result.stderr and "between 0 and 1" in result.stderr


def test_read_until_sees_a_drop_rate_drop_as_a_connection_error(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="o3", input="x", background=True, stream=True,
                                     metadata={"mock_options": OPTS, "mock_faults": "drop_rate=1"})
    _, last, response_id, error = read_until(stream)
    assert isinstance(error, openai.APIConnectionError) and response_id is not None and last >= 0
