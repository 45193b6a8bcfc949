"""``agent_nb batch``: a mistake is one sentence and exit status 2; ``list`` shows the stored batches."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from agent_nb import Agent, ResponsesClient, SQLiteRunStore
from agent_nb.batch import Batch
from agent_nb.batch._cli import main

from ..helpers import ROOT, free_port


def test_mistakes_are_one_sentence_and_exit_2(tmp_path: Path) -> None:
    store = str(tmp_path / "runs.sqlite3")
    done = subprocess.run([sys.executable, "-m", "agent_nb", "batch", "worker", "--store", store, "--name", "nope"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("agent_nb: There is no batch 'nope'") and "Traceback" not in done.stderr
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run([sys.executable, "-m", "agent_nb", "batch", "list", "--redis", unreachable], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Cannot reach the Redis run store" in done.stderr
    assert "Traceback" not in done.stderr


def test_list_shows_each_batch_with_its_counts(tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite3")
    out = io.StringIO()
    assert main(["batch", "list", "--store", str(store.path)], out) == 0
    assert out.getvalue() == f"No batches in {store}.\n"
    agent = Agent(ResponsesClient("http://127.0.0.1:9/v1", "k"), store=store)
    Batch.open(agent, ["one", "two"], name="pair", start=False)
    out = io.StringIO()
    assert main(["batch", "list", "--store", str(store.path)], out) == 0
    assert out.getvalue() == "pair\topen\t2 items: 2 pending\n"
