"""The batch ledger, on SQLite and on a real Redis: claims are atomic, writes are fenced by the owner, the items of
owners that are gone are taken over, and nothing is counted twice."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from agent_nb import StoreError
from agent_nb._store import RunStore
from agent_nb._store._ledger import BatchLedger, new_owner, owner_alive

SPEC = {"model": "mock-model", "options": {"metadata": {"tags": []}}}


@pytest.fixture
def ledger(store: RunStore) -> BatchLedger:
    ledger = store.ledger()
    ledger.open("b", SPEC)
    return ledger


def test_open_keeps_the_first_spec_and_add_only_adds_new_keys(ledger: BatchLedger) -> None:
    info, created = ledger.open("b", {"model": "other"})
    assert not created and info.spec == SPEC  # an empty list inside the spec survives the round trip
    assert ledger.add("b", [("a", "one"), ("b", [{"role": "user", "content": []}])]) == 2
    assert ledger.add("b", [("a", "changed"), ("c", "three")]) == 1
    items = ledger.items("b")
    assert [(i.key, i.position, i.input, i.status) for i in items] == [
        ("a", 0, "one", "pending"), ("b", 1, [{"role": "user", "content": []}], "pending"),
        ("c", 2, "three", "pending")]
    assert ledger.get("b").counts == {"pending": 3}  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="no batch 'nope'"):
        ledger.add("nope", [("a", "x")])


def test_claims_hand_each_item_to_one_owner_only(ledger: BatchLedger) -> None:
    ledger.add("b", [(f"k{i}", f"p{i}") for i in range(300)])
    owners = [new_owner() for _ in range(6)]
    claimed: dict[str, list[str]] = {}

    def work(owner: str) -> None:
        mine: list[str] = []
        while True:
            got = ledger.claim("b", owner, [f"run_{owner[-6:]}_{len(mine) + i}" for i in range(7)])
            if not got:
                break
            assert all(item.status == "claimed" and item.owner == owner and item.attempts == 1 for item in got)
            mine += [item.key for item in got]
        claimed[owner] = mine

    threads = [threading.Thread(target=work, args=(owner,)) for owner in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [key for keys in claimed.values() for key in keys]
    assert sorted(everything) == sorted(f"k{i}" for i in range(300))  # each once, none lost
    assert ledger.get("b").counts == {"claimed": 300}  # type: ignore[union-attr]


def test_writes_apply_only_to_the_owner_and_final_items_are_released(ledger: BatchLedger) -> None:
    ledger.add("b", [("a", "one"), ("b", "two")])
    me, other = new_owner(), new_owner()
    ledger.claim("b", me, ["run_1", "run_2"])
    assert ledger.write("b", other, [("a", {"status": "completed"})]) == 0  # not its item
    usage = {"input_tokens": 3, "output_tokens_details": {}}
    assert ledger.write("b", me, [("a", {"status": "completed", "usage": usage, "response_id": "resp_1"}),
                                  ("b", {"status": "pending", "error": {"code": "server_error", "message": "x"}})]) == 2
    a, b = ledger.items("b")
    assert (a.status, a.owner, a.usage, a.response_id, a.run_id) == ("completed", None, usage, "resp_1", "run_1")
    assert (b.status, b.owner, b.error) == ("pending", None, {"code": "server_error", "message": "x"})
    assert ledger.write("b", me, [("a", {"status": "failed"})]) == 0  # released: no longer its to change
    assert ledger.get("b").counts == {"completed": 1, "pending": 1}  # type: ignore[union-attr]
    again = ledger.claim("b", other, ["run_3"])
    assert [(i.key, i.attempts, i.run_id) for i in again] == [("b", 2, "run_3")]
    with pytest.raises(StoreError, match="Cannot write"):
        ledger.write("b", other, [("b", {"owner": "someone"})])


def test_items_of_a_dead_or_expired_owner_are_taken_over(ledger: BatchLedger) -> None:
    ledger.add("b", [("a", "one"), ("b", "two"), ("c", "three")])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = new_owner().rsplit(":", 2)[0] + f":{dead.stdout.strip()}:abcdef"  # this host, a process that has exited
    assert owner_alive(gone) is False
    ledger.heartbeat("b", gone, 60)
    ledger.claim("b", gone, ["run_1"])
    living = new_owner()
    ledger.heartbeat("b", living, 60)
    ledger.claim("b", living, ["run_2"])
    me = new_owner()
    taken = ledger.adopt("b", me)
    assert [(i.key, i.owner, i.run_id) for i in taken] == [("a", me, "run_1")]  # the living owner keeps its own
    assert ledger.adopt("b", me) == []
    ledger.release("b", living)  # a lease ended at once: taken over at once
    assert [i.key for i in ledger.adopt("b", me)] == ["b"]
    elsewhere = "another-host:123:abcdef"
    ledger.heartbeat("b", elsewhere, -1)  # a lease that has run out, on another machine
    ledger.claim("b", elsewhere, ["run_3"])
    assert [i.key for i in ledger.adopt("b", me)] == ["c"]
    assert ledger.write("b", elsewhere, [("c", {"status": "completed"})]) == 0  # fenced off after the takeover
    assert ledger.write("b", me, [("c", {"status": "completed"})]) == 1


def test_cancel_and_reset(ledger: BatchLedger) -> None:
    ledger.add("b", [("a", "one"), ("b", "two"), ("c", "three")])
    me = new_owner()
    ledger.claim("b", me, ["run_1"])
    ledger.write("b", me, [("a", {"status": "failed", "error": {"code": "x", "message": "boom"}})])
    assert ledger.cancel("b") == 2
    assert ledger.claim("b", me, ["run_2"]) == []  # nothing is claimed from a cancelled batch
    info = ledger.get("b")
    assert info is not None and info.state == "cancelled" and info.counts == {"failed": 1, "cancelled": 2}
    assert ledger.reset("b", ["failed"]) == 1
    info = ledger.get("b")
    assert info is not None and info.state == "open" and info.counts == {"pending": 1, "cancelled": 2}
    again = ledger.claim("b", me, ["run_3", "run_4"])
    assert [(i.key, i.attempts, i.error) for i in again] == [("a", 1, None)]
    assert [b.name for b in ledger.list()] == ["b"]
    ledger.delete("b")
    assert ledger.get("b") is None and ledger.list() == []
