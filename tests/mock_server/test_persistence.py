"""``--db``: responses survive ``kill -9``, and unfinished background runs continue exactly."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import openai

from ..helpers import ServerProcess, wait_until
from .test_background import collect, poll, read_until

PACED = "tokens=150,tps=150,ttft=0,queue_delay=0"


def stored_status(db: Path, response_id: str) -> str | None:
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT record FROM responses WHERE id = ?", (response_id,)).fetchone()
    except sqlite3.Error:
        return None
    return json.loads(row[0])["status"] if row else None


def test_finished_responses_are_served_as_before_after_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "mock.sqlite3"
    with ServerProcess("--db", str(db), "--tokens", "25", "--tps", "0", "--ttft", "0") as server:
        with openai.OpenAI(base_url=server.url, api_key="k", max_retries=0) as sdk:
            done = poll(sdk, sdk.responses.create(model="o3", input="Keep me", background=True).id)
            before, _, _ = collect(sdk.responses.retrieve(done.id, stream=True))
        wait_until(lambda: stored_status(db, done.id) == "completed", what="the record to be committed")
        server.kill()
    with ServerProcess("--db", str(db)) as server, openai.OpenAI(base_url=server.url, api_key="k") as sdk:
        again = sdk.responses.retrieve(done.id)
        assert again.status == "completed" and again.output_text == done.output_text
        replay, seqs, _final = collect(sdk.responses.retrieve(done.id, stream=True))
        assert replay == before == done.output_text and seqs == list(range(len(seqs)))


def test_an_unfinished_background_run_continues_exactly_after_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "mock.sqlite3"
    with ServerProcess("--db", str(db)) as server, openai.OpenAI(base_url=server.url, api_key="k",
                                                                 max_retries=0) as sdk:
        stream = sdk.responses.create(model="o3", input="Survive a crash", background=True, stream=True,
                                      metadata={"mock_options": PACED})
        text, last, response_id, _ = read_until(stream, 40)
        assert response_id is not None
        server.kill()  # the client's stream dies with the server
    assert stored_status(db, response_id) in ("queued", "in_progress")
    with ServerProcess("--db", str(db)) as server, openai.OpenAI(base_url=server.url, api_key="k") as sdk:
        rest, seqs, final = collect(sdk.responses.retrieve(response_id, stream=True, starting_after=last))
        assert final is not None and final.status == "completed"
        assert seqs == list(range(41, 41 + len(seqs)))
        assert text + rest == final.output_text
        # ... and it is the very text an uninterrupted run of the same request produces.
        reference = poll(sdk, sdk.responses.create(model="o3", input="Survive a crash", background=True,
                                                   metadata={"mock_options": PACED}).id)
        assert final.output_text == reference.output_text


def test_a_foreground_response_cut_by_a_crash_is_cancelled_after_restart(tmp_path: Path) -> None:
    db = tmp_path / "mock.sqlite3"
    with ServerProcess("--db", str(db)) as server, openai.OpenAI(base_url=server.url, api_key="k",
                                                                 max_retries=0) as sdk:
        stream = sdk.responses.create(model="o3", input="Foreground", stream=True,
                                      metadata={"mock_options": PACED})
        response_id = next(iter(stream)).response.id  # type: ignore[attr-defined]
        wait_until(lambda: stored_status(db, response_id) == "in_progress", what="the record")
        server.kill()
    with ServerProcess("--db", str(db)) as server, openai.OpenAI(base_url=server.url, api_key="k") as sdk:
        assert sdk.responses.retrieve(response_id).status == "cancelled"


def test_database_file_is_reused_not_truncated(tmp_path: Path) -> None:
    db = tmp_path / "mock.sqlite3"
    ids = []
    for _ in range(2):
        with ServerProcess("--db", str(db), "--tokens", "5", "--tps", "0", "--ttft", "0") as server, \
                openai.OpenAI(base_url=server.url, api_key="k") as sdk:
            ids.append(poll(sdk, sdk.responses.create(model="o3", input="x", background=True).id).id)
            assert all(sdk.responses.retrieve(i).status == "completed" for i in ids)
