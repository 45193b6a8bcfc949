"""``--db``: responses survive ``kill -9``, and unfinished background runs continue exactly."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from mock_server import MockServer, ServerConfig
from mock_server.persistence import SQLitePersistence

from ..conftest import FAST
from ..helpers import ServerProcess, free_port, wait_until
from ..small_disk import SmallDisk
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


def _create(http: httpx.Client, prompt: str, **extra: Any) -> httpx.Response:
    return http.post("responses", json={"model": "o3", "input": prompt, "background": True,
                                       "metadata": {"mock_options": PACED_LONG}, **extra})


PACED_LONG = "tokens=3000,tps=50,ttft=0,queue_delay=0"


def test_acknowledged_creates_and_cancels_survive_a_kill_9_right_after_the_answer(tmp_path: Path) -> None:
    db = tmp_path / "mock.sqlite3"
    port = free_port()
    created: list[str] = []
    cancelled: list[str] = []
    for round_ in range(3):
        with ServerProcess("--db", str(db), port=port) as server:
            with httpx.Client(base_url=server.url + "/", timeout=10) as http:
                for i in range(10):
                    response = _create(http, f"round {round_} run {i}")
                    assert response.status_code == 200, response.text
                    created.append(response.json()["id"])
                    if i % 2:
                        answer = http.post(f"responses/{created[-1]}/cancel")
                        assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
                        cancelled.append(created[-1])
            server.kill()  # at once: no chance to flush anything after the last answer
    with ServerProcess("--db", str(db), port=port) as server, httpx.Client(base_url=server.url + "/",
                                                                           timeout=10) as http:
        statuses = {rid: http.get(f"responses/{rid}").json().get("status") for rid in created}
    assert all(statuses[rid] == "cancelled" for rid in cancelled), statuses
    assert all(statuses[rid] in ("queued", "in_progress") for rid in set(created) - set(cancelled)), statuses


def test_a_write_that_fails_is_refused_with_a_503_and_the_writer_goes_on(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    commit = SQLitePersistence._commit

    def failing(db: sqlite3.Connection, ops: list[Any]) -> None:
        if any("poison" in str(op[2]) for op in ops):
            raise sqlite3.OperationalError("database or disk is full")
        commit(db, ops)

    monkeypatch.setattr(SQLitePersistence, "_commit", staticmethod(failing))
    db = tmp_path / "mock.sqlite3"
    with MockServer(ServerConfig(options=FAST, db=db)) as server, httpx.Client(base_url=server.url + "/",
                                                                               timeout=10) as http:
        refused = _create(http, "poison")
        assert refused.status_code == 503, refused.text
        assert "could not save" in refused.json()["error"]["message"]
        assert "database or disk is full" in refused.json()["error"]["message"]
        health = httpx.get(server.base_url + "/mock/health").json()
        assert health["persistence"]["failed_writes"] >= 1 and health["responses"] == 0
        kept = _create(http, "fine", metadata={"mock_options": "tokens=5,tps=0,ttft=0"})
        assert kept.status_code == 200
        kept_id = kept.json()["id"]
        wait_until(lambda: http.get(f"responses/{kept_id}").json()["status"] == "completed", what="completion")
    with MockServer(ServerConfig(options=FAST, db=db)) as server, httpx.Client(base_url=server.url + "/",
                                                                               timeout=10) as http:
        assert http.get(f"responses/{kept_id}").json()["status"] == "completed"
        assert httpx.get(server.base_url + "/mock/health").json()["responses"] == 1


def test_a_stopped_writer_makes_every_create_fail_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capfd: pytest.CaptureFixture[str]) -> None:
    def dies(self: SQLitePersistence, db: sqlite3.Connection, ops: list[Any]) -> None:
        raise MemoryError("simulated")

    db = tmp_path / "mock.sqlite3"
    with MockServer(ServerConfig(options=FAST, db=db)) as server, httpx.Client(base_url=server.url + "/",
                                                                               timeout=10) as http:
        assert _create(http, "before").status_code == 200
        monkeypatch.setattr(SQLitePersistence, "_write", dies)
        for _ in range(3):
            refused = _create(http, "after")
            assert refused.status_code == 503, refused.text
            assert "writer has stopped" in refused.json()["error"]["message"]
        assert "stopped" in httpx.get(server.base_url + "/mock/health").json()["persistence"]["writer"]
    assert "the database writer" in capfd.readouterr().err


def test_a_request_with_a_lone_surrogate_does_not_stop_persistence(tmp_path: Path) -> None:
    db = tmp_path / "mock.sqlite3"
    with ServerProcess("--db", str(db), "--tokens", "5", "--tps", "0", "--ttft", "0") as server:
        with httpx.Client(base_url=server.url + "/", timeout=10) as http:
            for field in ("model", "instructions", "input"):
                bad = {"model": "o3", "input": "x", "background": True, field: "\ud800"}
                assert http.post("responses", content=json.dumps(bad),
                                 headers={"content-type": "application/json"}).status_code == 400
            response_id = http.post("responses", json={"model": "o3", "input": "x", "background": True}).json()["id"]
            wait_until(lambda: http.get(f"responses/{response_id}").json()["status"] == "completed",
                       what="completion")
        wait_until(lambda: stored_status(db, response_id) == "completed", what="the record to be committed")
        server.kill()
    with ServerProcess("--db", str(db)) as server:
        assert httpx.get(f"{server.url}/responses/{response_id}", timeout=10).json()["status"] == "completed"


def test_a_full_disk_refuses_creates_until_space_comes_back(tmp_path: Path) -> None:
    with SmallDisk(tmp_path / "small", size_kib=1024) as disk:
        db = disk.mountpoint / "mock.sqlite3"
        port = free_port()
        with ServerProcess("--db", str(db), "--tokens", "5", "--tps", "0", "--ttft", "0", port=port,
                           wrap=disk.command) as server, httpx.Client(base_url=server.url + "/", timeout=10) as http:
            before = http.post("responses", json={"model": "o3", "input": "x", "background": True})
            assert before.status_code == 200
            disk.fill()
            refused = [http.post("responses", json={"model": "o3", "input": f"full {i}", "background": True,
                                                    "instructions": "x" * 20_000}) for i in range(5)]
            assert all(r.status_code == 503 for r in refused), [r.text for r in refused]
            assert "could not save" in refused[0].json()["error"]["message"]
            disk.free()
            after = http.post("responses", json={"model": "o3", "input": "y", "background": True})
            assert after.status_code == 200, after.text
            ids = [before.json()["id"], after.json()["id"]]
            server.kill()
        with ServerProcess("--db", str(db), port=port, wrap=disk.command) as server:
            for response_id in ids:
                assert httpx.get(f"{server.url}/responses/{response_id}", timeout=10).status_code == 200
