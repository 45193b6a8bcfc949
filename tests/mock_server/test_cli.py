"""``python -m mock_server``: banner, flags, Ctrl-C."""

from __future__ import annotations

import subprocess
import sys

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
