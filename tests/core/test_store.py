"""The run store: both backends keep runs exactly, checkpoints are atomic even under ``kill -9``, and nothing secret
is written."""

from __future__ import annotations

import builtins
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import redis

from agent_nb._errors import StoredRunNotFound, StoreError
from agent_nb._store import (
    TERMINAL,
    CheckpointWriter,
    RedisRunStore,
    RunRecord,
    RunStore,
    SQLiteRunStore,
    default_store,
    new_run_id,
)
from agent_nb._store._sqlite import _MIGRATIONS, default_path
from agent_nb._token import ContinuationToken

from ..helpers import ROOT, free_port, wait_until
from .conftest import Backend

ENDPOINT = "https://api.example.test/v1"

#: A process that writes checkpoints in a tight loop: argv is Backend.args, the run id, "add" (to add the run first)
#: or "", and the first and the stop sequence numbers. The text at number n is always expected_text(n).
WORKER = """
import sys
from agent_nb._store import RedisRunStore, RunRecord, SQLiteRunStore
kind, location, prefix, run_id, add, start, stop = sys.argv[1:]
store = SQLiteRunStore(location) if kind == "sqlite" else RedisRunStore(location, prefix=prefix)
if add:
    store.add(RunRecord(run_id=run_id, endpoint="https://api.example.test/v1", model="m", prompt="p"))
print("ready", flush=True)
text = "".join(f"{i}," for i in range(int(start)))
for seq in range(int(start), int(stop)):
    text += f"{seq},"
    store.checkpoint(run_id, seq, text, "in_progress")
store.close()
"""


def expected_text(sequence_number: int) -> str:
    return "".join(f"{i}," for i in range(sequence_number + 1))


def record(**fields: Any) -> RunRecord:
    values: dict[str, Any] = {"run_id": new_run_id(), "endpoint": ENDPOINT, "model": "o3", "prompt": "Write."}
    return RunRecord(**{**values, **fields})


def worker(backend: Backend, run_id: str, *, add: bool, start: int = 0, stop: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WORKER, *backend.args, run_id, "add" if add else "", str(start),
                             str(stop)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- records ---------------------------------------------------------------------------------------------------------


def test_new_run_ids_are_run_and_16_hex_characters_and_unique() -> None:
    ids = {new_run_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(run_id.startswith("run_") and len(run_id) == 20 and int(run_id[4:], 16) >= 0 for run_id in ids)


def test_record_token_resumes_after_the_last_event_and_is_none_without_a_response_or_when_finished() -> None:
    assert record().token is None
    assert record(response_id="resp_1", sequence_number=7).token == ContinuationToken("resp_1", 7)
    assert record(response_id="resp_1", status="lost").token == ContinuationToken("resp_1", None)
    for status in TERMINAL:
        finished = record(response_id="resp_1", sequence_number=7, status=status)
        assert finished.terminal and finished.token is None


def test_record_from_dict_ignores_keys_from_another_version() -> None:
    original = record(labels={"cell": "c1"}, error={"code": "x", "message": "y"})
    data = {**original.to_dict(), "added_in_a_later_version": [1, 2]}
    assert RunRecord.from_dict(data) == original


# -- both backends ---------------------------------------------------------------------------------------------------


def test_add_then_get_returns_an_equal_record(store: RunStore) -> None:
    full = record(response_id="resp_abc", instructions="Be brief.", status="in_progress", sequence_number=4,
                  text="héllo ✓ \"quoted\"\nnext", error={"code": "server_error", "message": "boom"}, name="essay",
                  labels={"notebook": "a/b.ipynb", "cell": "c-1"}, previous_response_id="resp_prev", mode="poll",
                  created_at=1_700_000_000.123456, updated_at=1_700_000_001.5)
    bare = record()
    store.add(full)
    store.add(bare)
    assert store.get(full.run_id) == full
    assert store.get(bare.run_id) == bare
    assert store.get(bare.run_id).labels == {} and store.get(bare.run_id).sequence_number is None


def test_a_returned_record_is_a_copy(store: RunStore) -> None:
    run = record(labels={"cell": "c1"})
    store.add(run)
    got = store.get(run.run_id)
    got.labels["cell"] = "changed"
    got.text = "changed"
    assert store.get(run.run_id) == run


def test_adding_the_same_run_twice_is_a_store_error(store: RunStore) -> None:
    run = record()
    store.add(run)
    with pytest.raises(StoreError, match=run.run_id):
        store.add(record(run_id=run.run_id, prompt="other"))
    assert store.get(run.run_id).prompt == run.prompt


def test_find_by_response_id_returns_the_newest_run_for_it(store: RunStore) -> None:
    now = time.time()
    older = record(response_id="resp_shared", created_at=now - 10)
    newer = record(response_id="resp_shared", created_at=now)
    other = record(response_id="resp_other", created_at=now + 1)
    for run in (older, newer, other):
        store.add(run)
    assert store.find("resp_shared") == newer
    assert store.find("resp_other") == other
    assert store.find("resp_unknown") is None
    store.delete(newer.run_id)
    assert store.find("resp_shared") in (older, None)  # SQLite finds the older run again; Redis may forget it


def test_find_sees_a_response_id_set_by_update(store: RunStore) -> None:
    run = record()
    store.add(run)
    store.update(run.run_id, response_id="resp_late", status="queued")
    found = store.find("resp_late")
    assert found is not None and found.run_id == run.run_id and found.status == "queued"


def test_list_filters_by_status_and_orders_newest_first(store: RunStore) -> None:
    now = time.time()
    runs = [record(status=status, created_at=now + i)
            for i, status in enumerate(["completed", "in_progress", "failed", "in_progress", "queued"])]
    for run in reversed(runs):  # insertion order must not matter
        store.add(run)
    newest_first = list(reversed(runs))
    assert store.list() == newest_first
    assert store.list(limit=2) == newest_first[:2]
    assert store.list(limit=0) == []
    assert store.list("in_progress") == [runs[3], runs[1]]
    assert store.list(["completed", "failed"]) == [runs[2], runs[0]]
    assert store.list(("in_progress", "queued"), limit=2) == [runs[4], runs[3]]
    assert store.list("cancelled") == []


def test_update_changes_the_fields_given_and_bumps_updated_at(store: RunStore) -> None:
    run = record(updated_at=time.time() - 100)
    store.add(run)
    before = time.time()
    updated = store.update(run.run_id, status="failed", error={"code": "rate_limit", "message": "slow down"},
                           labels={"cell": "c9"})
    assert updated.status == "failed" and updated.error == {"code": "rate_limit", "message": "slow down"}
    assert updated.labels == {"cell": "c9"} and updated.prompt == run.prompt and updated.created_at == run.created_at
    assert updated.updated_at >= before
    assert store.get(run.run_id) == updated
    assert store.update(run.run_id, updated_at=123.0, error=None).updated_at == 123.0
    assert store.get(run.run_id).error is None


def test_update_with_an_unknown_field_is_a_store_error_naming_it(store: RunStore) -> None:
    run = record()
    store.add(run)
    with pytest.raises(StoreError, match="'colour'") as caught:
        store.update(run.run_id, status="completed", colour="blue")
    assert not isinstance(caught.value, StoredRunNotFound)
    with pytest.raises(StoreError, match="'run_id'"):
        store.update(run.run_id, run_id="run_other")
    assert store.get(run.run_id) == run  # nothing was half-applied


def test_an_unknown_run_is_stored_run_not_found_with_its_id(store: RunStore) -> None:
    missing = new_run_id()
    calls: list[Callable[[], object]] = [lambda: store.get(missing), lambda: store.update(missing, status="failed"),
                                         lambda: store.checkpoint(missing, 3, "0,1,2,3,"),
                                         lambda: store.delete(missing)]
    for call in calls:
        with pytest.raises(StoredRunNotFound, match=f"No run '{missing}' in ") as caught:
            call()
        assert isinstance(caught.value, KeyError) and str(caught.value).startswith("No run")
    assert store.list() == []  # the checkpoint did not leave part of a run behind
    store.add(record(run_id=missing))  # nor anything that gets in the way of adding it


def test_checkpoint_sets_sequence_text_and_optionally_status(store: RunStore) -> None:
    run = record(status="queued", updated_at=time.time() - 100)
    store.add(run)
    store.checkpoint(run.run_id, 0, "0,", "in_progress")
    store.checkpoint(run.run_id, 1, "0,1,")
    got = store.get(run.run_id)
    assert (got.sequence_number, got.text, got.status) == (1, "0,1,", "in_progress")
    assert got.updated_at > run.updated_at and got.prompt == run.prompt
    store.checkpoint(run.run_id, 2, "0,1,2,", "completed")
    assert store.get(run.run_id).terminal


def test_checkpoint_keeps_the_items_with_the_text_and_gives_them_back_whole(store: RunStore) -> None:
    run = record(status="in_progress")
    store.add(run)
    items = [{"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Plan ✓"}]},
             {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": '{"a": '},
             {"type": "message", "id": "msg_1", "role": "assistant", "status": "in_progress",
              "content": [{"type": "output_text", "annotations": [], "_span": [0, None]}]}]
    store.checkpoint(run.run_id, 7, "Hello, wörld", items=items)
    got = store.get(run.run_id)
    assert got.items == items and got.output[2]["content"][0]["text"] == "Hello, wörld"
    assert got.output[:2] == items[:2]
    store.checkpoint(run.run_id, 8, "Hello, wörld!")  # a checkpoint without items leaves them as they were
    assert store.get(run.run_id).items == items
    assert store.get(run.run_id).output[2]["content"][0]["text"] == "Hello, wörld!"


def test_a_checkpoint_for_another_response_of_the_run_is_refused(store: RunStore) -> None:
    run = record(response_id="resp_leg_1")
    store.add(run)
    assert store.checkpoint(run.run_id, 30, expected_text(30), response_id="resp_leg_1") is True
    store.update(run.run_id, response_id="resp_leg_2", sequence_number=None)  # the run goes on in a new response
    # A process still following the first response is too late: its position belongs to the other response.
    assert store.checkpoint(run.run_id, 31, expected_text(31), response_id="resp_leg_1") is False
    assert store.checkpoint(run.run_id, 0, expected_text(0), response_id="resp_leg_2") is True
    got = store.get(run.run_id)
    assert (got.response_id, got.sequence_number, got.text) == ("resp_leg_2", 0, expected_text(0))


def test_a_checkpoint_never_moves_a_run_back(store: RunStore) -> None:
    run = record(response_id="resp_ahead")
    store.add(run)
    assert store.checkpoint(run.run_id, 40, expected_text(40), "in_progress") is True
    for behind in (39, 0, 40):  # a process that lags, or resumes from an older token
        assert store.checkpoint(run.run_id, behind, expected_text(behind), "queued") is False
    got = store.get(run.run_id)
    assert (got.sequence_number, got.text, got.status) == (40, expected_text(40), "in_progress")
    assert store.checkpoint(run.run_id, 41, expected_text(41)) is True
    assert store.get(run.run_id).sequence_number == 41


@pytest.mark.parametrize("final", sorted(TERMINAL))
def test_nothing_but_update_changes_a_finished_run(store: RunStore, final: str) -> None:
    run = record(response_id="resp_done")
    store.add(run)
    store.update(run.run_id, status=final, text="the final text", sequence_number=None)
    assert store.checkpoint(run.run_id, 10**6, "a late checkpoint", "in_progress") is False
    assert store.note_status(run.run_id, "lost", error={"code": "run_not_found", "message": "gone"}) is False
    got = store.get(run.run_id)
    assert (got.status, got.text, got.sequence_number, got.error) == (final, "the final text", None, None)


def test_note_status_sets_an_unfinished_runs_status_and_error_only(store: RunStore) -> None:
    run = record(response_id="resp_lost")
    store.add(run)
    store.checkpoint(run.run_id, 3, expected_text(3), "in_progress")
    reason = {"code": "run_not_found", "message": "The service has no response 'resp_lost'."}
    assert store.note_status(run.run_id, "lost", error=reason) is True
    got = store.get(run.run_id)
    assert (got.status, got.error, got.sequence_number, got.text) == ("lost", reason, 3, expected_text(3))
    assert store.checkpoint(run.run_id, 4, expected_text(4), "in_progress") is True  # found again: it goes on
    assert store.get(run.run_id).status == "in_progress"
    with pytest.raises(StoredRunNotFound):
        store.note_status(new_run_id(), "lost")


def test_delete_removes_the_run_everywhere(store: RunStore) -> None:
    keep, gone = record(response_id="resp_keep"), record(response_id="resp_gone")
    store.add(keep)
    store.add(gone)
    store.delete(gone.run_id)
    with pytest.raises(StoredRunNotFound):
        store.get(gone.run_id)
    assert store.find("resp_gone") is None and store.list() == [keep]
    with pytest.raises(StoredRunNotFound):
        store.delete(gone.run_id)


def test_prune_deletes_only_old_runs_with_the_given_statuses(store: RunStore) -> None:
    old = time.time() - 3600
    old_done = record(status="completed", updated_at=old)
    old_failed = record(status="failed", updated_at=old)
    old_running = record(status="in_progress", updated_at=old)
    new_done = record(status="completed")
    for run in (old_done, old_failed, old_running, new_done):
        store.add(run)
    assert store.prune(600) == 2
    assert {run.run_id for run in store.list()} == {old_running.run_id, new_done.run_id}
    assert store.prune(600, statuses=[]) == 0
    assert store.prune(600, statuses={"in_progress"}) == 1
    assert store.list() == [new_done]


def test_a_closed_store_is_a_store_error(backend: Backend) -> None:
    store = backend.open()
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list()


def reached(store: RunStore, run_id: str, sequence_number: int) -> Callable[[], bool]:
    return lambda: (store.get(run_id).sequence_number or 0) >= sequence_number


def test_checkpoint_pair_stays_consistent_when_the_writer_is_killed(backend: Backend, store: RunStore) -> None:
    run = record(response_id="resp_crash")
    store.add(run)
    seq = -1
    for _ in range(4):  # each kill -9 lands at a random point of the write loop
        target = seq + 1000
        proc = worker(backend, run.run_id, add=False, start=seq + 1, stop=10**9)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n", proc.stderr and proc.stderr.read()
            wait_until(reached(store, run.run_id, target), 60, f"checkpoint {target}")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            proc.stdout and proc.stdout.close()
            proc.stderr and proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        with backend.open() as reopened:
            got = reopened.get(run.run_id)
            assert got.sequence_number is not None and got.sequence_number >= target
            assert got.text == expected_text(got.sequence_number)
            assert got.status == "in_progress" and got.token == ContinuationToken("resp_crash", got.sequence_number)
            seq = got.sequence_number
    store.checkpoint(run.run_id, seq + 1, expected_text(seq + 1))  # still writable
    assert store.get(run.run_id).text == expected_text(seq + 1)


def test_several_processes_checkpoint_concurrently(backend: Backend) -> None:
    run_ids = [new_run_id() for _ in range(4)]
    procs = [worker(backend, run_id, add=True, stop=300) for run_id in run_ids]  # all open a new store at once
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert (proc.returncode, out, err) == (0, "ready\n", ""), err
    with backend.open() as store:
        assert {run.run_id for run in store.list()} == set(run_ids)
        for run_id in run_ids:
            got = store.get(run_id)
            assert (got.sequence_number, got.text) == (299, expected_text(299))


def test_threads_share_one_store(store: RunStore) -> None:
    runs = [record() for _ in range(8)]
    errors: list[BaseException] = []

    def write(run: RunRecord) -> None:
        try:
            store.add(run)
            for seq in range(100):
                store.checkpoint(run.run_id, seq, expected_text(seq))
                if seq % 25 == 0:
                    store.update(run.run_id, name=f"n{seq}")
                    store.list(limit=3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    for run in runs:
        got = store.get(run.run_id)
        assert (got.sequence_number, got.text, got.name) == (99, expected_text(99), "n75")


def test_an_api_key_in_the_environment_is_never_stored(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-" + os.urandom(16).hex()
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with backend.open() as store, CheckpointWriter(store) as writer:
        run = record(response_id="resp_key", labels={"notebook": "n.ipynb"})
        store.add(run)
        store.update(run.run_id, status="in_progress", name="keyless")
        writer.note(run.run_id, 0, "0,")
        writer.flush()
        assert store.get(run.run_id).endpoint == ENDPOINT
        stored = stored_bytes(backend)
    assert ENDPOINT.encode() in stored and b"resp_key" in stored  # we are looking at the right bytes
    assert secret.encode() not in stored


def stored_bytes(backend: Backend) -> bytes:
    """Everything the store wrote: the SQLite files, or every key and value under the Redis prefix."""
    if backend.kind == "sqlite":
        return b"".join(Path(backend.location + suffix).read_bytes()
                        for suffix in ("", "-wal", "-shm") if Path(backend.location + suffix).exists())
    chunks: list[bytes] = []
    with redis.Redis.from_url(backend.location) as client:
        for key in client.scan_iter(match=f"{backend.prefix}:*"):
            chunks.append(key)
            kind = client.type(key)
            if kind == b"hash":
                chunks.extend(part for item in client.hgetall(key).items() for part in item)
            elif kind == b"zset":
                chunks.extend(member for member, _ in client.zrange(key, 0, -1, withscores=True))
            else:
                raise AssertionError(f"unexpected {kind!r} at {key!r}")
    return b"\n".join(chunks)


# -- SQLite ----------------------------------------------------------------------------------------------------------


def test_sqlite_file_and_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new-home" / "runs.sqlite3"
    old_umask = os.umask(0o022)
    try:
        with SQLiteRunStore(path) as store:
            store.add(record())
            for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert str(path) in str(store) and str(path) in repr(store)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_every_directory_created_for_the_store_is_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "a" / "b" / "home" / "runs.sqlite3"
    (tmp_path / "a").mkdir(mode=0o755)
    os.chmod(tmp_path / "a", 0o755)
    old_umask = os.umask(umask)
    try:
        with SQLiteRunStore(path) as store:
            store.add(record())
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)
    for directory in (path.parent, path.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755  # one that existed is left as it was


def test_a_corrupt_sqlite_file_is_a_store_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    path.write_bytes(b"this is not a SQLite database, just a damaged file\n" * 200)
    with pytest.raises(StoreError, match="move it aside") as caught:
        SQLiteRunStore(path)
    assert str(path) in str(caught.value)
    with pytest.raises(StoreError, match=re.escape(str(tmp_path))):
        SQLiteRunStore(tmp_path)  # a directory is not a store either


def test_default_store_is_one_per_path_under_agent_nb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_NB_HOME", str(tmp_path / "a"))
    first = default_store()
    assert first.path == (tmp_path / "a" / "runs.sqlite3").resolve() and default_store() is first
    monkeypatch.setenv("AGENT_NB_HOME", str(tmp_path / "b"))
    second = default_store()
    assert second is not first and second.path.parent == (tmp_path / "b").resolve()
    second.close()
    assert default_store() is not second and not default_store().closed
    monkeypatch.setenv("AGENT_NB_HOME", str(tmp_path / "a"))
    assert default_store() is first
    first.close()
    default_store().close()
    monkeypatch.delenv("AGENT_NB_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".agent_nb" / "runs.sqlite3"


# -- Redis -----------------------------------------------------------------------------------------------------------


def test_redis_errors_name_the_url_without_its_password() -> None:
    port = free_port()  # nothing listens there
    store = RedisRunStore(f"redis://user:hunter2secret@127.0.0.1:{port}/0?password=hunter2secret", prefix="x")
    assert "hunter2secret" not in repr(store) and f"user:***@127.0.0.1:{port}/0" in repr(store)
    with pytest.raises(StoreError, match="Cannot reach the Redis run store") as caught:
        store.list()
    assert "hunter2secret" not in str(caught.value) and f"user:***@127.0.0.1:{port}/0" in str(caught.value)
    store.close()


def test_redis_without_the_package_is_a_store_error_saying_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(StoreError, match="pip install redis"):
        RedisRunStore("redis://127.0.0.1:1/0")


def test_redis_store_accepts_a_ready_client(redis_server: str) -> None:
    with redis.Redis.from_url(redis_server, decode_responses=True) as client:
        store = RedisRunStore(client=client, prefix=f"client-{new_run_id()}")
        run = record(labels={"cell": "c"})
        store.add(run)
        assert store.get(run.run_id) == run and "127.0.0.1" in repr(store)
        store.close()
        assert client.ping()  # not ours to close


# -- CheckpointWriter ------------------------------------------------------------------------------------------------


class CountingStore(RunStore):
    """A store that counts checkpoint writes and can be told to fail them."""

    def __init__(self, inner: RunStore) -> None:
        self.inner = inner
        self.checkpoints = 0
        self.fail_with: BaseException | None = None

    def add(self, record: RunRecord) -> None:
        self.inner.add(record)

    def get(self, run_id: str) -> RunRecord:
        return self.inner.get(run_id)

    def find(self, response_id: str) -> RunRecord | None:
        return self.inner.find(response_id)

    def list(self, status: str | Iterable[str] | None = None, *, limit: int | None = None) -> builtins.list[RunRecord]:
        return self.inner.list(status, limit=limit)

    def _update(self, run_id: str, fields: dict[str, Any]) -> RunRecord:
        return self.inner.update(run_id, **fields)

    def _advance(self, run_id: str, fields: dict[str, Any], *, past: int | None,
                 response_id: str | None = None) -> bool:
        if self.fail_with is not None:
            raise self.fail_with
        self.checkpoints += past is not None
        return self.inner._advance(run_id, fields, past=past, response_id=response_id)

    def delete(self, run_id: str) -> None:
        self.inner.delete(run_id)

    def prune(self, older_than: float, *, statuses: Iterable[str] = TERMINAL) -> int:
        return self.inner.prune(older_than, statuses=statuses)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def counting(tmp_path: Path) -> CountingStore:
    return CountingStore(SQLiteRunStore(tmp_path / "runs.sqlite3"))


def test_checkpoint_writer_batches_many_notes_into_few_writes(counting: CountingStore) -> None:
    run = record()
    counting.add(run)
    with CheckpointWriter(counting, interval=0.05) as writer:
        notes, deadline = 0, time.monotonic() + 0.4
        while time.monotonic() < deadline:
            writer.note(run.run_id, notes, f"text {notes}")
            notes += 1
        last = notes - 1
        wait_until(lambda: counting.get(run.run_id).sequence_number == last, 5, "the background write")
        assert counting.get(run.run_id).text == f"text {last}"
    assert notes > 1000 and 1 <= counting.checkpoints <= 20, (notes, counting.checkpoints)


def test_checkpoint_writer_flush_makes_the_latest_state_visible_at_once(counting: CountingStore) -> None:
    runs = [record(), record()]
    for run in runs:
        counting.add(run)
    with CheckpointWriter(counting, interval=60) as writer:
        for seq in range(500):
            for run in runs:
                writer.note(run.run_id, seq, expected_text(seq), "in_progress" if seq == 0 else None)
        assert counting.checkpoints == 0 and writer.pending == 2  # the thread waits out its interval
        writer.flush()
        assert counting.checkpoints == 2 and writer.pending == 0 and writer.last_error is None
        for run in runs:
            got = counting.get(run.run_id)  # an early status survives later notes without one
            assert (got.sequence_number, got.text, got.status) == (499, expected_text(499), "in_progress")
        writer.note(runs[0].run_id, 500, expected_text(500), "completed")
    assert counting.get(runs[0].run_id).status == "completed" and counting.checkpoints == 3  # close() flushed


def test_checkpoint_writer_keeps_write_errors_and_retries_them(counting: CountingStore) -> None:
    run = record()
    counting.add(run)
    with CheckpointWriter(counting, interval=60) as writer:
        counting.fail_with = StoreError("disk full")
        writer.note(run.run_id, 0, "0,")
        writer.flush()  # does not raise
        assert isinstance(writer.last_error, StoreError) and writer.pending == 1
        writer.note(run.run_id, 1, "0,1,")
        counting.fail_with = None
        writer.flush()
        assert writer.last_error is None and writer.pending == 0
        assert counting.get(run.run_id).sequence_number == 1
        counting.delete(run.run_id)
        writer.note(run.run_id, 2, "0,1,2,")
        writer.flush()  # a run that is gone is dropped, not retried forever
        assert isinstance(writer.last_error, StoredRunNotFound) and writer.pending == 0


class Die(BaseException):
    """Kills the writer's thread, as nothing a store raises normally would."""


def test_checkpoint_writer_loses_no_notes_when_its_thread_dies(counting: CountingStore,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    died: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", died.append)
    run = record()
    counting.add(run)
    with CheckpointWriter(counting, interval=0.01) as writer:
        counting.fail_with = Die()
        writer.note(run.run_id, 0, "0,", "in_progress")
        wait_until(lambda: died, 5, "the writer thread to die")
        assert writer.pending == 1
        counting.fail_with = None
        writer.note(run.run_id, 1, "0,1,")  # starts a new thread
        wait_until(lambda: counting.get(run.run_id).sequence_number == 1, 5, "the new thread to write")
        got = counting.get(run.run_id)
        assert (got.text, got.status) == ("0,1,", "in_progress")
    assert len(died) == 1 and died[0].exc_type is Die


def test_a_store_file_of_the_first_schema_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    with sqlite3.connect(path) as db:
        for statement in _MIGRATIONS[0]:
            db.execute(statement)
        db.execute("INSERT INTO runs VALUES ('run_0123456789abcdef', 'http://old/v1', 'o3', 'p', 'resp_old', NULL, "
                   "'completed', 7, 'old text', NULL, 'old', '{}', NULL, 'stream', 1.0, 2.0)")
        db.execute("PRAGMA user_version = 1")
    with SQLiteRunStore(path) as store:
        old = store.get("run_0123456789abcdef")
        assert (old.text, old.sequence_number, old.service) == ("old text", 7, None)
        new = record(service="mock")
        store.add(new)
        assert store.get(new.run_id).service == "mock"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(_MIGRATIONS)
