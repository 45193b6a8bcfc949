"""What a batch hands back: one row per item in input order, exports to pandas and JSON Lines, inputs from a pandas
column keyed by its index, and progress that shows in plain Python (tqdm's bar, or lines without it)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from agent_nb import Agent
from agent_nb.batch import BatchProgress
from agent_nb.batch._inputs import input_key, normalise_inputs
from agent_nb.batch._progress import TextProgress, format_duration

from .test_batch import agent, server  # noqa: F401 (fixtures)


def test_inputs_keep_their_order_and_get_stable_keys() -> None:
    pairs = normalise_inputs(["a", "b", "a", [{"role": "user", "content": "c"}]])
    assert [k for k, _ in pairs] == [input_key("a"), input_key("b"), input_key("a") + "#2",
                                     input_key([{"role": "user", "content": "c"}])]
    assert normalise_inputs(["a", "b", "a"]) == pairs[:3]  # the same list gives the same keys
    column = pd.Series(["first", "second"], index=["row-1", 7])
    assert normalise_inputs(column) == [("row-1", "first"), ("7", "second")]
    assert normalise_inputs({"x": "one"}) == [("x", "one")]


def test_results_export_to_pandas_and_json_lines(agent: Agent, tmp_path: Path) -> None:  # noqa: F811
    column = pd.Series([f"Summarise clause {i}" for i in range(12)], index=[f"clause-{i}" for i in range(12)])
    batch = agent.batch(column, name="clauses")
    batch.wait(60, progress=False)
    frame = batch.to_pandas()
    assert list(frame.index) == list(column.index)
    assert set(frame["status"]) == {"completed"} and frame["text"].str.len().min() > 0
    assert list(frame.columns) == ["status", "text", "error", "error_code", "usage", "run_id", "attempts"]
    path = batch.to_jsonl(tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["key"] for r in rows] == list(column.index) and rows[0]["text"] == frame["text"].iloc[0]
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_progress_reads_as_one_line() -> None:
    progress = BatchProgress("b", 500, done=412, failed=6, running=64, waiting=18, elapsed=42, throughput=9.8,
                             rate_limited=3)
    assert progress.summary() == ("412/500 done · 6 failed · 64 running · 18 waiting · 9.8/s · ETA 8s · "
                                  "rate-limited, resuming in 3s · 42s")
    assert format_duration(185) == "3m05s" and format_duration(7380) == "2h03m" and format_duration(None) == "?"
    assert BatchProgress("b", 3, done=3, state="completed").summary() == "3/3 done · completed · 0s"


def test_plain_python_shows_a_bar_with_tqdm_and_lines_without(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    bar = TextProgress("b", 10, out)
    bar.update(BatchProgress("b", 10, done=5, running=5))
    bar.close(BatchProgress("b", 10, done=10, state="completed"))
    assert "batch b" in out.getvalue() and "10/10" in out.getvalue()
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # tqdm not installed
    out = io.StringIO()
    bar = TextProgress("b", 10, out)
    for done in range(11):
        bar.update(BatchProgress("b", 10, done=done))
    bar.close(BatchProgress("b", 10, done=10, state="completed"))
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 12 and lines[-1] == "batch b: 10/10 done · completed · 0s"
