"""A run survives its kernel being killed: a new kernel resumes it by run id and ends with exactly the server's text.

Real Jupyter kernels (ipykernel, started with jupyter_client from this venv's Python) talk to the mock server
running as a subprocess. The first kernel starts a paced ``%%agent`` run and is killed with SIGKILL mid-run; a
second kernel with the same ``AGENT_NB_HOME`` runs ``%agent resume RUN_ID``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from ..helpers import ServerProcess, wait_until

pytestmark = pytest.mark.timeout(150)

#: Paced so that a run takes several seconds: long enough to kill the kernel in the middle of it.
SERVER_ARGS = ("--tokens", "400", "--tps", "60", "--ttft", "0")


class KernelError(AssertionError):
    """A cell raised in the kernel."""


def _kernel_spec_dir(tmp: Path) -> Path:
    """A ``python3`` kernelspec running *this* interpreter, so the kernel has the project and its extras."""
    spec = tmp / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "agent-nb test kernel",
        "language": "python",
    }))
    return spec.parent


class Kernel:
    """One ipykernel process and a blocking client to it; :meth:`run` executes code and returns its stdout."""

    def __init__(self, kernels_dir: Path, env: dict[str, str]) -> None:
        self.manager = KernelManager(kernel_name="python3",
                                     kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels_dir)]))
        self.env = env
        self.client: BlockingKernelClient | None = None
        self.pid: int | None = None

    def start(self) -> Kernel:
        self.manager.start_kernel(env=self.env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)
        self.pid = int(self.run("import os; print(os.getpid())"))
        return self

    def run(self, code: str, timeout: float = 30.0) -> str:
        assert self.client is not None
        out: list[str] = []
        errors: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content.get("name") == "stdout":
                out.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content.get("traceback") or [f"{content['ename']}: {content['evalue']}"]))

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=hook, store_history=False)
        if errors or reply["content"]["status"] != "ok":
            raise KernelError(f"cell failed in the kernel:\n{code}\n" + "\n".join(errors))
        return "".join(out).strip()

    def kill(self) -> None:
        """SIGKILL: the kernel gets no chance to flush, close or say goodbye."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        wait_until(lambda: not self.manager.is_alive(), 15, "the killed kernel to be gone")

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        try:
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)
        finally:
            self.manager.cleanup_resources()


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with ServerProcess(*SERVER_ARGS) as process:
        yield process


def server_response(server: ServerProcess, response_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/responses/{response_id}", timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_run_resumes_exactly_in_a_new_kernel_after_the_old_one_was_killed(
        tmp_path: Path, agent_nb_home: Path, server: ServerProcess) -> None:
    kernels_dir = _kernel_spec_dir(tmp_path)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OPENAI_", "AZURE_OPENAI_", "AGENT_NB_"))}
    env.update(AGENT_NB_HOME=str(agent_nb_home), OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-test",
               PYTHONUNBUFFERED="1")

    # -- kernel 1: start a run, then kill the kernel while the run is still streaming ----------------------------
    first = Kernel(kernels_dir, env)
    try:
        first.start()
        first.run("%load_ext agent_nb\n%config AgentMagics.model = 'o3'")
        first.run("%%agent -o run --name restart\nWrite a long market analysis of the Nordic grid-storage sector.")

        def progress() -> dict[str, Any] | None:
            # Killed only once the store holds some of the text too: its checkpoints trail what the kernel shows.
            state = json.loads(first.run("import json; from agent_nb import default_store\n"
                                         "stored = default_store().get(run.run_id).text if run.run_id else ''\n"
                                         "print(json.dumps({'run_id': run.run_id, "
                                         "'response_id': run.response_id, 'chars': len(run.text), "
                                         "'stored': len(stored), 'status': run.status}))"))
            return state if state["run_id"] and state["response_id"] and state["chars"] >= 200 \
                and state["stored"] > 0 else None

        before = wait_until(progress, 30, "the run to stream some text in kernel 1")
        assert before["status"] == "in_progress", before
        first.kill()
    finally:
        first.stop()

    run_id, response_id = before["run_id"], before["response_id"]
    mid = server_response(server, response_id)
    assert mid["status"] == "in_progress", "the kernel was meant to die mid-run; the run had already ended"

    # -- kernel 2: resume by run id from the shared store, follow it to the end -----------------------------------
    second = Kernel(kernels_dir, env)
    try:
        second.start()
        second.run("%load_ext agent_nb")
        started = time.monotonic()
        second.run(f"%agent resume {run_id}")
        state = json.loads(second.run(
            "import json, time\n"
            "magics = get_ipython().magics_manager.registry['AgentMagics']\n"
            "assert len(magics.runs) == 1, magics.runs\n"
            "handle = magics.runs[-1]\n"
            "resumed_text = handle.text\n"
            "deadline = time.monotonic() + 10\n"
            "while handle.run is None and time.monotonic() < deadline:\n"
            "    time.sleep(0.01)\n"
            "seen = []  # the text after each delta: what the stream itself delivered, before the final snapshot\n"
            "handle.run.add_observer(lambda r, change: seen.append(r.text) if change == 'text' else None)\n"
            "response = handle.wait(60)\n"
            "print(json.dumps({'run_id': handle.run_id, 'response_id': handle.response_id, 'status': handle.status,"
            " 'error': handle.error, 'text': handle.text, 'resumed_text': resumed_text,"
            " 'response_text': response.text if response is not None else None, 'name': handle.name,"
            " 'streamed_text': seen[-1] if seen else None}))",
            timeout=90))
        elapsed = time.monotonic() - started
    finally:
        second.stop()

    final = server_response(server, response_id)
    expected = final["output"][0]["content"][0]["text"]
    assert final["status"] == "completed"
    assert state["status"] == "completed", state["error"]
    assert (state["run_id"], state["response_id"], state["name"]) == (run_id, response_id, "restart")
    assert state["resumed_text"], "the new kernel should show the stored text at once"
    assert expected.startswith(state["resumed_text"]), "the stored text is not a prefix of the service's text"
    assert state["streamed_text"] == expected, "the deltas received across both kernels do not add up to the text"
    assert state["text"] == expected
    assert state["response_text"] == expected
    assert len(expected) > before["chars"]
    assert elapsed < 60
