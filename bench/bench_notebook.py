"""The notebook-side cost of agent-nb, each figure against a baseline measured in the same run.

* Kernel CPU time per 1,000 deltas with the live widget, against the same stream followed without a widget, in a
  real IPython kernel (widget state goes out over comms as it would in JupyterLab).
* Redraws per second of the widget on a paced stream, against its limit (``REDRAWS_PER_SECOND``).
* The time ``%load_ext agent_nb`` takes in a fresh kernel, against ``import ipywidgets`` alone.
* What one redraw of the answer costs (kernel CPU, and HTML sent to the browser) when the answer is 1 MB, against
  when it is 10 KB (the goal: within 2x), and against re-rendering the whole answer as a single HTML widget would.

Run: ``python bench/bench_notebook.py [--deltas 20000]``. The mock server runs as a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent

FOLLOW = """
import json, time
from agent_nb import Agent, ResponsesClient
from agent_nb.notebook import NotebookRun, RunWidget
from IPython.display import display
agent = Agent(ResponsesClient({url!r}, "bench"), model="bench", store=False)
options = {{"metadata": {{"mock_options": "tokens={deltas},tps={tps},ttft=0,queue_delay=0"}}}}
def follow(with_widget):
    cpu, wall = time.process_time(), time.perf_counter()
    handle = NotebookRun.start(agent, "Benchmark {tag}", options=options)
    widget = RunWidget.for_run(handle) if with_widget else None
    if widget is not None:
        display(widget)
    handle.wait(600)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert handle.status == "completed", handle.status
    return {{"cpu": cpu, "wall": wall, "deltas": {deltas}, "redraws": widget.redraws if widget else 0}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Kernel:
    """A fresh ipykernel of this interpreter, driven with jupyter_client."""

    def __init__(self, env: dict[str, str]) -> None:
        self.km = KernelManager(transport="ipc", kernel_cmd=[sys.executable, "-m", "ipykernel_launcher", "-f",
                                                             "{connection_file}"])
        self.km.start_kernel(env=env, cwd=str(ROOT))
        self.client = self.km.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 600) -> str:
        """Execute ``code``; return what it printed (raises on an error in the kernel)."""
        out: list[str] = []

        def collect(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=collect)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"kernel error: {reply['content']}")
        return "".join(out)

    def stop(self) -> None:
        self.client.stop_channels()
        self.km.shutdown_kernel(now=True)


def start_server(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "mock_server", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if "Mock Responses server on" not in proc.stdout.readline():
        proc.kill()
        raise SystemExit("the mock server did not start")
    return proc


def median_of(kernel: Kernel, calls: str, repeat: int) -> dict[str, float]:
    runs = [json.loads(kernel.run(f"print(json.dumps({calls}))")) for _ in range(repeat)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def load_time(env: dict[str, str], statement: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        kernel = Kernel(env)
        try:
            times.append(float(kernel.run(
                f"import time\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)")))
        finally:
            kernel.stop()
    return statistics.median(times)


def redraw_cost(size: int) -> tuple[float, float, float]:
    """CPU seconds and characters of HTML per redraw while an answer grows to ``size`` characters (over its last
    40,000 characters, one paragraph per redraw), and the CPU of re-rendering the whole answer once."""
    import time

    sys.path.insert(0, str(ROOT))
    from agent_nb.notebook._answer_view import AnswerView
    from agent_nb.notebook._markdown import render_markdown

    paragraph = "The market grew **4%** in Q4, per [the report](https://example.com/r). " * 3 + "\n\n"
    text = paragraph * (max(0, size - 40_000) // len(paragraph))
    view = AnswerView()
    view.show(text)
    sent_before, started, count = view.sent, time.process_time(), 0
    while len(text) < size:
        text += paragraph
        view.show(text)
        count += 1
    paged = (time.process_time() - started) / count
    sent = (view.sent - sent_before) / count
    started = time.process_time()
    render_markdown(text)
    return paged, sent, time.process_time() - started


def redraws(repeat: int) -> None:
    small = min((redraw_cost(10_000) for _ in range(repeat)), key=lambda r: r[0])
    large = min((redraw_cost(1_000_000) for _ in range(repeat)), key=lambda r: r[0])
    print(f"one redraw of the answer: 10 KB answer {1000 * small[0]:.2f} ms CPU, {small[1] / 1024:.1f} KiB HTML; "
          f"1 MB answer {1000 * large[0]:.2f} ms, {large[1] / 1024:.1f} KiB -> {large[0] / small[0]:.2f}x CPU, "
          f"{large[1] / small[1]:.2f}x bytes (goal: within 2x); re-rendering the whole 1 MB answer instead: "
          f"{1000 * large[2]:.0f} ms per redraw ({large[2] / large[0]:.0f}x the paged view)")


def main(deltas: int, repeat: int) -> None:
    redraws(repeat)
    port = free_port()
    server = start_server(port)
    url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AGENT_NB_HOME": home, "PYTHONPATH": str(ROOT)}
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            env.pop(name, None)
        kernel = Kernel(env)
        try:
            kernel.run(FOLLOW.format(url=url, deltas=deltas, tps=0, tag="unpaced"))
            follow(kernel, deltas, repeat)
            kernel.run(FOLLOW.format(url=url, deltas=400, tps=100, tag="paced"))
            paced = median_of(kernel, "follow(True)", 3)
            rate = paced["redraws"] / paced["wall"]
            from agent_nb.notebook._widget import REDRAWS_PER_SECOND

            print(f"redraws on a paced stream (100 deltas/s for {paced['wall']:.1f} s): {rate:.1f}/s "
                  f"= {rate / REDRAWS_PER_SECOND:.2f}x the limit of {REDRAWS_PER_SECOND}/s")
        finally:
            kernel.stop()
        baseline = load_time(env, "import ipywidgets", repeat)
        ours = load_time(env, "get_ipython().run_line_magic('load_ext', 'agent_nb')", repeat)
        print(f"%load_ext agent_nb: {1000 * ours:.0f} ms, import ipywidgets alone: {1000 * baseline:.0f} ms "
              f"-> {ours / baseline:.2f}x (fresh kernels, median of {repeat})")
    server.send_signal(signal.SIGINT)
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()


def follow(kernel: Kernel, deltas: int, repeat: int) -> None:
    bare = median_of(kernel, "follow(False)", repeat)
    shown = median_of(kernel, "follow(True)", repeat)
    per_k_bare = 1000 * bare["cpu"] / deltas * 1000
    per_k_shown = 1000 * shown["cpu"] / deltas * 1000
    print(f"Stream of {deltas:,} deltas, unpaced, followed in a real kernel (median of {repeat}):")
    print(f"  kernel CPU per 1,000 deltas: {per_k_shown:.1f} ms with the widget, {per_k_bare:.1f} ms without "
          f"-> the widget adds {100 * (per_k_shown / per_k_bare - 1):+.0f}%")
    print(f"  redraws: {shown['redraws']:.0f} for {deltas:,} deltas arriving at {deltas / shown['wall']:,.0f}/s "
          f"({shown['redraws'] / deltas * 1000:.2f} per 1,000 deltas; status changes force a few)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deltas", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    main(args.deltas, args.repeat)
