"""A batch whose run store's disk fills up for real mid-batch (a small tmpfs, see ``tests/small_disk.py``): the
batch warns once and keeps going; once the disk has room again every item completes, with the server's text in its
run record, and no item is created twice. Whatever the store held while the disk was full was consistent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from agent_nb._polling import output_text
from mock_server import MockServer, ServerConfig

from ..helpers import ROOT
from ..small_disk import SmallDisk

ITEMS = 120


def test_a_disk_that_fills_up_mid_batch_loses_nothing_and_creates_nothing_twice(tmp_path: Path) -> None:
    # 8 MiB: once the filler is gone, room for the write-ahead log to grow to SQLite's checkpoint size (4 MiB).
    with MockServer(ServerConfig()) as server, SmallDisk(tmp_path / "small", size_kib=8192) as disk:
        store_path = disk.mountpoint / "runs.sqlite3"
        proc = subprocess.Popen(disk.command([sys.executable, "-m", "tests.batch.full_disk_batch_worker", server.url,
                                              str(store_path), str(ITEMS)], cwd=ROOT),
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "working"
            disk.fill()
            assert proc.stdout.readline().strip() == "warned"  # the store refused a write, and the batch said so
            # While the disk is full, what the store holds is consistent: every completed run's text is whole, and
            # no run was created that has no record (a create waits for its record to be committed).
            records = _records(disk, store_path)
            _check_completed(records, server)
            assert 0 < _health(server)["creates"] <= len(records)
            disk.free()
            out, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == 0, out
        result = json.loads(out.strip().splitlines()[-1])
        assert result["state"] == "completed" and result["done"] == ITEMS and result["failed"] == 0, result["state"]
        assert result["warnings"] and "could not be written" in result["warnings"][0]
        assert "full" in (result["store_error_shown"] or "") and result["store_error_at_end"] is None
        assert len(result["warnings"]) <= 3, result["warnings"]  # warned about once, not per write
        assert all(r["status"] == "completed" and r["attempts"] == 1 for r in result["results"])
        assert _health(server)["creates"] == ITEMS  # nothing created twice
        records = {r["run_id"]: r for r in _records(disk, store_path)}
        assert _check_completed(list(records.values()), server) == ITEMS
        for row in result["results"]:
            assert records[row["run_id"]]["text"] == row["text"]


def _health(server: MockServer) -> dict[str, int]:
    return httpx.get(f"{server.base_url}/mock/health", timeout=10).json()  # type: ignore[no-any-return]


def _records(disk: SmallDisk, store_path: Path) -> list[dict[str, str]]:
    """The run records in the store on the small disk, read by a process inside its namespace."""
    read = subprocess.run(disk.command([sys.executable, "-m", "tests.batch.full_disk_batch_worker", "--read",
                                        str(store_path)], cwd=ROOT), cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(read.stdout)  # type: ignore[no-any-return]


def _check_completed(records: list[dict[str, str]], server: MockServer) -> int:
    """Each completed run record has exactly the server's text; returns how many there are."""
    completed = [r for r in records if r["status"] == "completed"]
    for record in completed:
        body = httpx.get(f"{server.url}/responses/{record['response_id']}", timeout=10,
                         headers={"Authorization": "Bearer test"}).json()
        assert record["text"] == output_text(body), record["run_id"]
    return len(completed)
