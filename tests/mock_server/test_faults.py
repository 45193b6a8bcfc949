"""Every fault the server injects, as a real client meets it."""

from __future__ import annotations

import socket
import time

import httpx
import openai
import pytest

from mock_server import MockServer

from ..helpers import wait_until
from .test_background import collect, poll, read_until

OPTS = "tokens=30,tps=0,ttft=0,queue_delay=0"


def start_stream(client: openai.OpenAI, faults: str, options: str = OPTS, **kw: object) -> object:
    return client.responses.create(model="o3", input="Faulty", background=True, stream=True,
                                   metadata={"mock_options": options, "mock_faults": faults}, **kw)  # type: ignore[call-overload]


def read_until_error(stream: object) -> tuple[str, int, str | None, BaseException | None]:
    return read_until(stream)


def test_drop_after_cuts_the_connection_and_a_resume_gets_the_rest(client: openai.OpenAI) -> None:
    text, last, response_id, error = read_until_error(start_stream(client, "drop_after=9"))
    assert isinstance(error, openai.APIConnectionError)
    assert last == 8 and response_id is not None
    rest, seqs, final = collect(client.responses.retrieve(response_id, stream=True, starting_after=last))
    assert final is not None and seqs[0] == 9
    assert text + rest == final.output_text


def test_drops_limits_how_many_connections_are_cut(client: openai.OpenAI) -> None:
    text, last, response_id, error = read_until_error(start_stream(client, "drop_after=5,drops=3"))
    assert response_id is not None
    connections = 1
    while error is not None:
        more, last2, _, error = read_until_error(client.responses.retrieve(response_id, stream=True,
                                                                           starting_after=last))
        text, last = text + more, max(last, last2)
        connections += 1
    assert connections == 4
    assert text == poll(client, response_id).output_text


def test_fail_at_ends_the_response_as_failed_with_an_error(client: openai.OpenAI) -> None:
    text, seqs, final = collect(start_stream(client, "fail_at=8"))
    assert final is not None and final.status == "failed"
    assert seqs[-1] == 8
    assert final.error is not None and final.error.code == "server_error" and "event 8" in final.error.message
    assert text == final.output_text  # what was generated before the failure is kept


def test_incomplete_at_ends_the_response_incomplete(client: openai.OpenAI) -> None:
    text, _, final = collect(start_stream(client, "incomplete_at=4"))
    assert final is not None and final.status == "incomplete"
    assert final.incomplete_details is not None and final.incomplete_details.reason == "max_output_tokens"
    assert final.usage is not None and final.usage.output_tokens == 4
    assert text == final.output_text


def test_http_429_in_a_header_fails_the_first_k_identical_requests(mock: MockServer) -> None:
    with openai.OpenAI(base_url=mock.url, api_key="k", max_retries=2) as sdk:
        started = time.monotonic()
        response = sdk.responses.create(model="o3", input="Retry me", metadata={"mock_options": OPTS},
                                        extra_headers={"X-Mock-Faults": "http_429=2,retry_after=0.05"})
        assert response.status == "completed"
        assert time.monotonic() - started >= 0.1  # both Retry-After waits were honoured
    with openai.OpenAI(base_url=mock.url, api_key="k", max_retries=0) as sdk, \
            pytest.raises(openai.RateLimitError) as caught:
        sdk.responses.create(model="o3", input="No retry", extra_headers={"X-Mock-Faults": "http_429=1"})
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]


@pytest.mark.parametrize(("status", "error"), [(500, openai.InternalServerError), (503, openai.InternalServerError)])
def test_http_5xx_in_a_header(client: openai.OpenAI, status: int, error: type[Exception]) -> None:
    request = {"model": "o3", "input": "x", "metadata": {"mock_options": OPTS},
               "extra_headers": {"X-Mock-Faults": f"http_{status}=1"}}
    with pytest.raises(error) as caught:
        client.responses.create(**request)  # type: ignore[call-overload]
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    # The same request again is answered normally: only K requests fail.
    assert client.responses.create(**request).status == "completed"  # type: ignore[call-overload]


def test_http_errors_in_metadata_fail_the_follow_up_requests(client: openai.OpenAI) -> None:
    created = client.responses.create(model="o3", input="x", background=True,
                                      metadata={"mock_options": OPTS, "mock_faults": "http_503=2,retry_after=0"})
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.responses.retrieve(created.id)
    assert poll(client, created.id).status == "completed"


def test_server_wide_faults_reach_unmodified_clients(fresh_mock: MockServer) -> None:
    fresh_mock.set_faults("http_500=1,drop_after=3")
    with openai.OpenAI(base_url=fresh_mock.url, api_key="k", max_retries=0) as sdk:
        with pytest.raises(openai.InternalServerError):
            sdk.models.list()
        assert sdk.models.list().data
        _, last, _, error = read_until_error(sdk.responses.create(model="o3", input="x", background=True,
                                                                  stream=True))
        assert isinstance(error, openai.APIConnectionError) and last == 2
        state = httpx.get(fresh_mock.base_url + "/mock/faults").json()
        assert state == {"faults": "drop_after=3"}
        fresh_mock.clear_faults()
        _, _, final = collect(sdk.responses.create(model="o3", input="x", background=True, stream=True))
        assert final is not None and final.status == "completed"


def test_stall_silences_a_connection_while_the_run_goes_on(client: openai.OpenAI, mock: MockServer) -> None:
    with httpx.Client(timeout=httpx.Timeout(10, read=0.5)) as raw:
        with pytest.raises(httpx.ReadTimeout), raw.stream(
            "POST", mock.url + "/responses",
            json={"model": "o3", "input": "Stall", "background": True, "stream": True,
                  "metadata": {"mock_options": "tokens=20,tps=0,ttft=0,queue_delay=0",
                               "mock_faults": "stall_after=3,stall=30"}},
        ) as response:
            frames = 0
            for chunk in response.iter_raw():
                frames += chunk.count(b"\n\n")
        assert frames == 3


def test_slow_first_token_delays_the_first_delta(client: openai.OpenAI) -> None:
    started = time.monotonic()
    first_delta_at = None
    for event in start_stream(client, "slow_first_token=0.3"):  # type: ignore[attr-defined]
        if event.type == "response.output_text.delta" and first_delta_at is None:
            first_delta_at = time.monotonic() - started
    assert first_delta_at is not None and first_delta_at >= 0.3


def test_expire_stream_refuses_to_resume(client: openai.OpenAI) -> None:
    created = client.responses.create(model="o3", input="x", background=True,
                                      metadata={"mock_options": OPTS, "mock_faults": "expire_stream"})
    with pytest.raises(openai.BadRequestError, match="can no longer be streamed"):
        client.responses.retrieve(created.id, stream=True, starting_after=3)
    assert poll(client, created.id).status == "completed"  # polling still works


def test_split_cuts_frames_inside_multibyte_characters(mock: MockServer, client: openai.OpenAI) -> None:
    options = "tokens=80,tps=0,ttft=0,queue_delay=0,mode=multibyte"
    sock = socket.create_connection(("127.0.0.1", mock.port))  # type: ignore[arg-type]
    body = (f'{{"model":"o3","input":"Split","background":true,"stream":true,"metadata":{{"mock_options":"{options}",'
            '"mock_faults":"split=5"}}').encode()
    sock.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close"
                 b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    sock.close()
    _head, _, chunked = raw.partition(b"\r\n\r\n")
    pieces = _dechunk(chunked)
    assert max(len(p) for p in pieces) <= 5
    cut_inside_a_character = 0
    for piece in pieces:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            cut_inside_a_character += 1
    assert cut_inside_a_character > 0
    # The SDK reassembles the same stream correctly.
    text, _, final = collect(start_stream(client, "split=5", options=options))
    assert final is not None and text == final.output_text


def _dechunk(data: bytes) -> list[bytes]:
    pieces = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        pieces.append(data[:size])
        data = data[size + 2:]
    return pieces


def test_unknown_fault_is_a_400_that_lists_the_known_ones(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"Unknown mock fault 'explode'.*drop_after"):
        client.responses.create(model="o3", input="x", metadata={"mock_faults": "explode=1"})
    with pytest.raises(openai.BadRequestError, match="expected an integer, got 'many'"):
        client.responses.create(model="o3", input="x", extra_headers={"X-Mock-Faults": "drop_after=many"})


def test_a_dropped_client_does_not_stop_a_background_run(client: openai.OpenAI) -> None:
    _, _, response_id, error = read_until_error(
        start_stream(client, "drop_after=4", options="tokens=50,tps=500,ttft=0,queue_delay=0"))
    assert error is not None and response_id is not None
    wait_until(lambda: client.responses.retrieve(response_id).status == "completed", what="completion")
