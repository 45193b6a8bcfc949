"""``python -m mock_server``: banner, flags, Ctrl-C."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from ..helpers import ROOT, ServerProcess
from .test_faults import read_until_error


def test_prints_its_base_url_and_exits_cleanly_on_ctrl_c() -> None:
    server = ServerProcess().start()
    try:
        assert server.banner.strip().startswith(f"Mock Responses server on http://127.0.0.1:{server.port}/v1")
        assert httpx.get(server.url + "/models", timeout=5).status_code == 200
    finally:
        code = server.stop()
    assert code == 0
    assert "Traceback" not in (server.proc.stderr.read() if server.proc and server.proc.stderr else "")


def test_fault_and_pacing_flags_apply_to_every_response() -> None:
    with ServerProcess("--drop-after", "4", "--tokens", "10", "--tps", "0", "--ttft", "0") as server, \
            openai.OpenAI(base_url=server.url, api_key="k", max_retries=0) as sdk:
        _, last, _, error = read_until_error(sdk.responses.create(model="o3", input="x", background=True,
                                                                  stream=True))
        assert isinstance(error, openai.APIConnectionError) and last == 3
        assert httpx.get(f"http://127.0.0.1:{server.port}/mock/faults").json() == {"faults": "drop_after=4"}


def test_api_key_flag_requires_the_key() -> None:
    with ServerProcess("--api-key", "sk-cli") as server:
        with openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0) as sdk, \
                pytest.raises(openai.AuthenticationError):
            sdk.models.list()
        with openai.OpenAI(base_url=server.url, api_key="sk-cli") as sdk:
            assert sdk.models.list().data


def test_api_key_flag_takes_several_keys_and_patterns() -> None:
    with ServerProcess("--api-key", "sk-one", "--api-key", r"re:tok-\d+") as server:
        for key, accepted in (("sk-one", True), ("tok-42", True), ("tok-42x", False), ("sk-two", False)):
            with openai.OpenAI(base_url=server.url, api_key=key, max_retries=0) as sdk:
                if accepted:
                    assert sdk.models.list().data
                else:
                    with pytest.raises(openai.AuthenticationError):
                        sdk.models.list()
    result = subprocess.run([sys.executable, "-m", "mock_server", "--api-key", "re:[unclosed"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "is not a valid pattern" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bad_flag_values_exit_with_a_message() -> None:
    result = subprocess.run([sys.executable, "-m", "mock_server", "--faults", "nonsense=1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Unknown mock fault 'nonsense'" in result.stderr and "Traceback" not in result.stderr


def test_help_lists_the_faults() -> None:
    result = subprocess.run([sys.executable, "-m", "mock_server", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    for flag in ("--drop-after", "--fail-at", "--http-429", "--stall", "--split", "--db", "--api-key"):
        assert flag in result.stdout


def test_a_busy_port_is_one_sentence_and_exit_status_2() -> None:
    with ServerProcess() as server:
        result = subprocess.run([sys.executable, "-m", "mock_server", "--port", str(server.port)], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (f"mock_server: port {server.port} on 127.0.0.1 is already in use (another mock "
                                     "server?). Stop it, or choose another port with --port (--port 0 picks a free "
                                     "one).")


@pytest.mark.parametrize("content", [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 5000])
def test_a_damaged_db_file_is_one_sentence_naming_it_and_exit_status_2(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "damaged.sqlite3"
    db.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "mock_server", "--port", "0", "--db", str(db)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(db) in result.stderr and "move it aside" in result.stderr
    assert db.read_bytes() == content, "a damaged file must be left as it was"


def test_a_damaged_record_in_the_db_is_skipped_with_a_warning(tmp_path: Path) -> None:
    db = tmp_path / "mock.sqlite3"
    with ServerProcess("--db", str(db), "--tokens", "3", "--tps", "0", "--ttft", "0") as server:
        good = httpx.post(f"{server.url}/responses", json={"model": "o3", "input": "x"}, timeout=10).json()["id"]
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO responses VALUES ('resp_bad', '{not json', 0)")
    server = ServerProcess("--db", str(db)).start()
    try:
        assert httpx.get(f"{server.url}/responses/{good}", timeout=10).status_code == 200
        assert httpx.get(f"{server.url}/responses/resp_bad", timeout=10).status_code == 404
    finally:
        server.stop()
    assert server.proc is not None and server.proc.stderr is not None
    stderr = server.proc.stderr.read()
    for stream in (server.proc.stdout, server.proc.stderr):
        if stream is not None:
            stream.close()
    assert "skipping stored response resp_bad: its record is damaged" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize(("flags", "message"), [
    (["--tps", "nan"], "expected a finite number"),
    (["--max-tokens", "0"], "--max-tokens must be at least 1"),
    (["--tokens", "500", "--max-tokens", "100"], "--tokens 500 is more than --max-tokens 100"),
    (["--retry-after", "inf"], "expected a finite number"),
])
def test_bad_limits_and_pacing_flags_exit_with_a_message(flags: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "mock_server", "--port", "0", *flags], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
