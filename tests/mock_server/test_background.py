"""Background mode as the official openai SDK (strict validation) sees it."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from mock_server import MockServer

from ..helpers import wait_until

FAST = {"mock_options": "tokens=40,tps=0,ttft=0,queue_delay=0"}


def poll(client: openai.OpenAI, response_id: str) -> openai.types.responses.Response:
    return wait_until(
        lambda: (r := client.responses.retrieve(response_id)).status not in ("queued", "in_progress") and r,
        what=f"{response_id} to finish",
    )


def collect(events: object) -> tuple[str, list[int], openai.types.responses.Response | None]:
    """Concatenated deltas, the sequence numbers seen, and the final Response (if a terminal event came)."""
    text, seqs, final = "", [], None
    for event in events:  # type: ignore[attr-defined]
        seqs.append(event.sequence_number)
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type in ("response.completed", "response.failed", "response.incomplete"):
            final = event.response
    return text, seqs, final


def read_until(stream: object, stop_after: int | None = None
               ) -> tuple[str, int, str | None, BaseException | None]:
    """Read a stream up to event ``stop_after`` (then close it) or until it ends or fails.

    Returns the concatenated deltas, the last sequence number, the response id and the error that ended it, if any.
    """
    text, last, response_id = "", -1, None
    try:
        for event in stream:  # type: ignore[attr-defined]
            last = event.sequence_number
            if event.type == "response.created":
                response_id = event.response.id
            if event.type == "response.output_text.delta":
                text += event.delta
            if last == stop_after:
                stream.close()  # type: ignore[attr-defined]
                break
    except openai.APIError as exc:
        return text, last, response_id, exc
    return text, last, response_id, None


def test_background_create_answers_queued_at_once_and_polls_to_completion(client: openai.OpenAI) -> None:
    created = client.responses.create(model="o3", input="Write a market analysis.", background=True, metadata=FAST)
    assert created.status == "queued"
    assert created.output == [] and created.usage is None and created.background is True
    done = poll(client, created.id)
    assert done.status == "completed"
    assert done.usage is not None and done.usage.output_tokens == 40
    assert len(done.output_text.split()) >= 30


def test_reply_is_deterministic_for_the_same_input_and_differs_for_another(client: openai.OpenAI) -> None:
    a = poll(client, client.responses.create(model="o3", input="Alpha", background=True, metadata=FAST).id)
    b = poll(client, client.responses.create(model="o3", input="Alpha", background=True, metadata=FAST).id)
    c = poll(client, client.responses.create(model="o3", input="Beta", background=True, metadata=FAST).id)
    assert a.output_text == b.output_text
    assert a.output_text != c.output_text


def test_streamed_deltas_concatenate_to_the_final_output_text(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="o3", input="Hi", background=True, stream=True,
                                     metadata={"mock_options": "tokens=60,tps=0,ttft=0,mode=multibyte"})
    text, seqs, final = collect(stream)
    assert final is not None and final.status == "completed"
    assert seqs == list(range(len(seqs)))
    assert text == final.output_text
    assert any(ord(ch) > 0xFFFF for ch in text) or any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_event_order_follows_the_protocol(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="o3", input="Hi", background=True, stream=True,
                                     metadata={"mock_options": "tokens=2,tps=0,ttft=0"})
    types = [event.type for event in stream]
    assert types == [
        "response.created", "response.queued", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]


@pytest.mark.parametrize("break_after", [0, 1, 4, 5, 6, 9, 12])
def test_resume_with_starting_after_gives_exactly_the_rest(client: openai.OpenAI, break_after: int) -> None:
    stream = client.responses.create(model="o3", input="Resume me", background=True, stream=True,
                                     metadata={"mock_options": "tokens=8,tps=0,ttft=0"})
    first_text, last, response_id, _ = read_until(stream, break_after)
    assert response_id is not None and last == break_after
    rest_text, seqs, final = collect(client.responses.retrieve(response_id, stream=True, starting_after=last))
    assert final is not None
    assert seqs == list(range(last + 1, last + 1 + len(seqs)))
    assert first_text + rest_text == final.output_text


def test_replay_without_starting_after_starts_at_event_zero(client: openai.OpenAI) -> None:
    created = client.responses.create(model="o3", input="Replay", background=True, metadata=FAST)
    done = poll(client, created.id)
    text, seqs, final = collect(client.responses.retrieve(created.id, stream=True))
    assert seqs[0] == 0 and final is not None
    assert text == done.output_text


def test_live_events_follow_a_replay_without_gap_or_duplicate(client: openai.OpenAI) -> None:
    created = client.responses.create(model="o3", input="Slow", background=True,
                                      metadata={"mock_options": "tokens=30,tps=300,ttft=0,queue_delay=0"})
    wait_until(lambda: client.responses.retrieve(created.id).status == "in_progress", what="in_progress")
    text, seqs, final = collect(client.responses.retrieve(created.id, stream=True, starting_after=1))
    assert final is not None
    assert seqs == list(range(2, 2 + len(seqs)))
    assert text == final.output_text


def test_sdk_stream_helper_replays_a_background_response(client: openai.OpenAI) -> None:
    created = client.responses.create(model="o3", input="Helper", background=True, metadata=FAST)
    with client.responses.stream(response_id=created.id) as stream:
        final = stream.get_final_response()
    assert final.output_text == poll(client, created.id).output_text


def test_cancel_is_idempotent_and_ends_the_stream(client: openai.OpenAI) -> None:
    created = client.responses.create(model="o3", input="Long", background=True,
                                      metadata={"mock_options": "tokens=500,tps=50,ttft=0,queue_delay=0"})
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    again = client.responses.cancel(created.id)
    assert again.status == "cancelled"
    assert client.responses.retrieve(created.id).status == "cancelled"
    _text, _seqs, final = collect(client.responses.retrieve(created.id, stream=True))
    assert final is None  # the stream simply ends: there is no response.cancelled event


def test_cancel_stops_generation_while_a_stream_is_open(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="o3", input="Long", background=True, stream=True,
                                     metadata={"mock_options": "tokens=2000,tps=200,ttft=0,queue_delay=0"})
    deltas = 0
    for event in stream:
        if event.type == "response.created":
            client.responses.cancel(event.response.id)
            response_id = event.response.id
        deltas += event.type == "response.output_text.delta"
    assert deltas < 2000
    assert client.responses.retrieve(response_id).status == "cancelled"


def test_cancel_of_a_finished_response_leaves_it_as_it_was(client: openai.OpenAI) -> None:
    done = poll(client, client.responses.create(model="o3", input="x", background=True, metadata=FAST).id)
    assert client.responses.cancel(done.id).status == "completed"


def test_follow_up_turn_keeps_the_conversation(client: openai.OpenAI) -> None:
    first = poll(client, client.responses.create(model="o3", input="Turn one", background=True, metadata=FAST).id)
    second = poll(client, client.responses.create(model="o3", input="Turn two", background=True, metadata=FAST,
                                                  previous_response_id=first.id).id)
    alone = poll(client, client.responses.create(model="o3", input="Turn two", background=True, metadata=FAST).id)
    assert second.previous_response_id == first.id
    assert second.output_text != alone.output_text  # the earlier turn shapes the reply
    items = client.responses.input_items.list(second.id)
    assert [item.content[0].text for item in items.data] == ["Turn two"]  # type: ignore[union-attr]


def test_unknown_previous_response_is_a_404_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="resp_nope"):
        client.responses.create(model="o3", input="x", previous_response_id="resp_nope")


def test_metadata_instructions_and_max_output_tokens(client: openai.OpenAI) -> None:
    created = client.responses.create(model="o3", input="x", background=True, instructions="Be brief.",
                                      max_output_tokens=16,
                                      metadata={**FAST, "notebook": "analysis.ipynb"})
    done = poll(client, created.id)
    assert done.metadata is not None and done.metadata["notebook"] == "analysis.ipynb"
    assert done.instructions == "Be brief."
    assert done.status == "incomplete"
    assert done.incomplete_details is not None and done.incomplete_details.reason == "max_output_tokens"
    assert done.usage is not None and done.usage.output_tokens == 16


def test_item_list_input_and_input_items_pagination(client: openai.OpenAI) -> None:
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"part {i}"}]}
             for i in range(5)]
    created = client.responses.create(model="o3", input=items, background=True, metadata=FAST)  # type: ignore[arg-type]
    page = client.responses.input_items.list(created.id, order="asc", limit=2)
    assert [i.content[0].text for i in page.data] == ["part 0", "part 1"]  # type: ignore[union-attr]
    assert page.has_more
    everything = [i.content[0].text for i in client.responses.input_items.list(created.id, order="asc")]  # type: ignore[union-attr]
    assert everything == [f"part {i}" for i in range(5)]


def test_non_background_request_answers_the_finished_response(client: openai.OpenAI) -> None:
    response = client.responses.create(model="o3", input="Plain", metadata=FAST)
    assert response.status == "completed" and response.background is False
    assert client.responses.retrieve(response.id).output_text == response.output_text


def test_store_false_is_not_retrievable(client: openai.OpenAI) -> None:
    response = client.responses.create(model="o3", input="Ephemeral", store=False, metadata=FAST)
    assert response.status == "completed"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_non_background_stream_dies_with_its_connection(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="o3", input="Live", stream=True,
                                     metadata={"mock_options": "tokens=5000,tps=200,ttft=0"})
    for event in stream:
        if event.type == "response.created":
            response_id = event.response.id
        if event.type == "response.output_text.delta":
            break
    stream.close()
    wait_until(lambda: client.responses.retrieve(response_id).status == "cancelled", what="the run to stop")
    with pytest.raises(openai.BadRequestError, match="not created with background=true"):
        client.responses.retrieve(response_id, stream=True)


def test_background_run_continues_after_its_stream_is_closed(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="o3", input="Keep going", background=True, stream=True,
                                     metadata={"mock_options": "tokens=40,tps=400,ttft=0,queue_delay=0"})
    for event in stream:
        if event.type == "response.created":
            response_id = event.response.id
            break
    stream.close()
    assert poll(client, response_id).status == "completed"


def test_delete_removes_the_response(client: openai.OpenAI) -> None:
    created = client.responses.create(model="o3", input="x", background=True, metadata=FAST)
    poll(client, created.id)
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError, match=created.id):
        client.responses.retrieve(created.id)


def test_deleting_a_response_ends_its_open_streams_at_once(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="o3", input="Delete me mid-stream", background=True, stream=True,
                                     metadata={"mock_options": "tokens=5000,tps=50,ttft=0,queue_delay=0"})
    seen: list[int] = []
    ids: list[str] = []
    ended = threading.Event()

    def read() -> None:
        for event in stream:
            seen.append(event.sequence_number)
            if event.type == "response.created":
                ids.append(event.response.id)
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_until(lambda: len(seen) > 10, what="the stream to be under way")
    client.responses.delete(ids[0])
    assert ended.wait(5), "the stream stayed open after its response was deleted"
    reader.join(5)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(ids[0])


def test_models_are_listed(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert "o3" in ids and "mock-model" in ids


def test_scripted_reply_through_metadata_is_exact(client: openai.OpenAI) -> None:
    reply = "Exactly this, and <b>nothing</b> else — 完全に。"
    stream = client.responses.create(model="o3", input="anything", background=True, stream=True,
                                     metadata={"mock_reply": reply, "mock_options": "tps=0,ttft=0"})
    text, _, final = collect(stream)
    assert text == reply and final is not None and final.output_text == reply


def test_retention_expires_polling_and_streaming(tmp_path: object) -> None:
    from mock_server import ServerConfig

    from ..conftest import FAST as OPTIONS

    with MockServer(ServerConfig(options=OPTIONS, stream_retention=0.2, poll_retention=0.6)) as server, \
            openai.OpenAI(base_url=server.url, api_key="k", max_retries=0) as sdk:
        done = poll(sdk, sdk.responses.create(model="o3", input="x", background=True).id)
        wait_until(lambda: _stream_status(server, done.id) == 400, what="the resume window to close")
        assert sdk.responses.retrieve(done.id).status == "completed"  # still pollable
        with pytest.raises(openai.BadRequestError, match="can no longer be streamed"):
            sdk.responses.retrieve(done.id, stream=True)
        wait_until(lambda: _stream_status(server, done.id, stream=False) == 404, what="the response to expire")


def _stream_status(server: MockServer, response_id: str, stream: bool = True) -> int:
    query = "?stream=true" if stream else ""
    return httpx.get(f"{server.url}/responses/{response_id}{query}", timeout=5).status_code
