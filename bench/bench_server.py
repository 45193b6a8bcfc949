"""Capacity benchmark of the mock Responses server, against a bare Starlette peer.

Run ``.venv/bin/python bench/bench_server.py`` (``--quick`` for a smoke run, ``--help`` for the knobs).

Three kinds of process take part, so that none steals another's event loop:

* the mock server, started as users start it (``python -m mock_server --port 0 ...``), fresh for every measured
  phase so that the runs one phase keeps in memory do not weigh on the next (and so its RSS growth is that phase's);
* the peer, a bare Starlette app served by uvicorn the way ``python -m mock_server`` serves the mock (same
  ``uvicorn.Config`` arguments, same ``asyncio.run`` start-up, hence the same event loop and HTTP parser, which the
  script checks in ``/proc/<pid>/maps``). It streams the frames of one real mock-server stream, captured first:
  ``POST /v1/responses`` yields them one frame per chunk; ``POST /whole/v1/responses`` yields the whole stream as
  one chunk, which is how the mock sends an unpaced stream (all its events are due at once), the like-for-like
  reference;
* the load client, a raw-socket HTTP/1.1 client on uvloop (an ``asyncio.Protocol`` doing chunked decoding and
  counting SSE frames by ``b"\\n\\n"``), in its own process. It measures its own CPU use and the server's over the
  exact measured window, so a client-bound figure shows up as such.

The script re-invokes itself for the peer (``_peer``) and the client (``_client``). Every child is stopped by its
PID on exit, error or Ctrl-C, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
PROJECT = HERE.parent.parent
HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")
PROMPT = "Write a short capacity note about streaming benchmarks."


# -- /proc helpers ---------------------------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_cpu_seconds() -> tuple[float, float]:
    """(user + nice + system, steal) of the whole machine, in CPU-seconds."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (fields[0] + fields[1] + fields[2]) / TICKS, (fields[7] if len(fields) > 7 else 0) / TICKS


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_libs(pid: int) -> str:
    """The event loop and HTTP parser the process has loaded, read from its memory map."""
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    return f"{'uvloop' if 'uvloop' in maps else 'asyncio'} loop + {'httptools' if 'httptools' in maps else 'h11'}"


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))]


def split_frames(body: bytes) -> list[bytes]:
    frames = [part + b"\n\n" for part in body.split(b"\n\n") if part]
    if b"".join(frames) != body:
        raise ValueError("the captured body is not a sequence of SSE frames each ending in a blank line")
    return frames


# =====================================================================================================================
# The load client (its own process: ``bench_server.py _client SPEC_JSON``, prints one JSON line)
# =====================================================================================================================

_TS_KEY = b'"mock_emitted_at":'
_HEADERS, _SIZE, _DATA, _TRAILER, _DONE = range(5)


class _Phase:
    """What all streams of one measured phase share."""

    def __init__(self, spec: dict[str, Any]) -> None:
        tps = float(spec.get("tps", 0))
        self.delays: list[float] | None = [] if spec.get("delays") else None  # receive time - mock_emitted_at
        self.lags: list[float] = []  # mock_emitted_at - the stream's schedule
        self.emitted: list[float] = []  # mock_emitted_at, parallel to lags
        self.gap = 1.0 / tps if tps > 0 else 0.0


class _Stream(asyncio.Protocol):
    """One POST whose chunked SSE answer is decoded and counted as it arrives; nothing else is kept."""

    def __init__(self, request: bytes, phase: _Phase) -> None:
        self.request = request
        self.phase = phase
        self.transport: Any = None  # uvloop's transports do not subclass asyncio.Transport
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.state = _HEADERS
        self.pending = b""  # an incomplete header block, chunk-size line or trailer
        self.remaining = 0  # bytes of the current chunk's data still to come
        self.crlf = 0  # bytes of the CRLF after the chunk's data still to skip
        self.body = bytearray()  # decoded bytes not yet split into frames (at most one partial frame)
        self.frames = 0
        self.last_event = b""
        self.error: str | None = None
        self.first_emitted: float | None = None
        self.deltas = 0
        self.started_at = time.time()
        self.connected_at = 0.0
        self.headers_at = 0.0
        self.ended_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.connected_at = time.time()
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.pending:
            data, self.pending = self.pending + data, b""
        body, find = self.body, data.find
        pos, n, had = 0, len(data), len(self.body)
        while pos < n:
            state = self.state
            if state == _SIZE:  # the hot path: chunk-size line, then the whole chunk if it is all here
                i = find(b"\r\n", pos)
                if i < 0:
                    self.pending = data[pos:]
                    break
                line = data[pos:i]
                size = int(line.split(b";", 1)[0] if b";" in line else line, 16)
                pos = i + 2
                if not size:
                    self.state = _TRAILER
                    continue
                end = pos + size
                if end + 2 <= n:
                    body += data[pos:end]
                    pos = end + 2
                else:
                    self.remaining, self.crlf, self.state = size, 2, _DATA
            elif state == _DATA:
                if self.remaining:
                    end = min(n, pos + self.remaining)
                    body += data[pos:end]
                    self.remaining -= end - pos
                    pos = end
                    continue
                take = min(self.crlf, n - pos)
                pos += take
                self.crlf -= take
                if not self.crlf:
                    self.state = _SIZE
            elif state == _HEADERS:
                i = find(b"\r\n\r\n", pos)
                if i < 0:
                    self.pending = data[pos:]
                    break
                head = data[pos:i].lower()
                pos = i + 4
                if head[9:12] != b"200":
                    self._finish(f"HTTP {head[9:12].decode(errors='replace')}")
                    return
                if b"\r\ntransfer-encoding: chunked" not in head:
                    self._finish("response not chunked")
                    return
                self.headers_at = time.time()
                self.state = _SIZE
            elif state == _TRAILER:
                i = find(b"\r\n", pos)
                if i < 0:
                    self.pending = data[pos:]
                    break
                if i == pos:
                    self.state = _DONE
                pos = i + 2
            else:
                break
        if len(body) > had:
            self._split_frames()
        if self.state == _DONE:
            self._finish(None if self.last_event == b"response.completed" else
                         f"last event {self.last_event.decode(errors='replace') or 'none'}")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self._finish(f"connection lost ({type(exc).__name__ if exc else 'EOF'}) after {self.frames} frames")

    def _split_frames(self) -> None:
        body = self.body
        last = body.rfind(b"\n\n")
        if last < 0:
            return
        end = last + 2
        self.frames += body.count(b"\n\n", 0, end)
        start = body.rfind(b"\n\n", 0, last)
        start = start + 2 if start >= 0 else 0  # where the last complete frame begins
        if body.startswith(b"event: ", start):
            self.last_event = bytes(body[start + 7:body.find(b"\n", start, end)])
        phase = self.phase
        if phase.delays is not None:
            now = time.time()
            i = body.find(_TS_KEY, 0, end)
            while i >= 0:
                j = i + len(_TS_KEY)
                k = body.find(b"}", j, end)
                emitted = float(body[j:k])
                phase.delays.append(now - emitted)
                if self.first_emitted is None:
                    self.first_emitted = emitted
                phase.lags.append(emitted - self.first_emitted - self.deltas * phase.gap)
                phase.emitted.append(emitted)
                self.deltas += 1
                i = body.find(_TS_KEY, k, end)
        del body[:end]

    def _finish(self, error: str | None) -> None:
        if self.done.done():
            return
        self.error = error
        self.ended_at = time.time()
        self.state = _DONE
        if self.transport is not None:
            self.transport.close()
        self.done.set_result(None)


def _self_and_children_cpu(server_pid: int) -> float:
    """CPU-seconds of this client, the server under test and the orchestrator (the processes of this bench)."""
    total = proc_cpu_seconds(os.getpid()) + proc_cpu_seconds(server_pid)
    with contextlib.suppress(OSError):
        total += proc_cpu_seconds(os.getppid())
    return total


async def _one_stream(request: bytes, phase: _Phase, port: int, timeout: float) -> _Stream:
    loop = asyncio.get_running_loop()
    proto = _Stream(request, phase)
    deadline = loop.time() + timeout
    try:
        await asyncio.wait_for(loop.create_connection(lambda: proto, HOST, port), timeout)
        await asyncio.wait_for(asyncio.shield(proto.done), max(0.0, deadline - loop.time()))
    except asyncio.TimeoutError:
        proto._finish(f"timeout after {proto.frames} frames")
    except OSError as exc:
        proto._finish(f"connect failed ({type(exc).__name__})")
    return proto


async def _worker(request: bytes, phase: _Phase, port: int, rounds: int, timeout: float) -> list[_Stream]:
    """One connection slot: ``rounds`` streams one after the other."""
    return [await _one_stream(request, phase, port, timeout) for _ in range(rounds)]


async def _client_main(spec: dict[str, Any]) -> dict[str, Any]:
    port, concurrency, rounds = int(spec["port"]), int(spec["concurrency"]), int(spec.get("rounds", 1))
    timeout, server_pid = float(spec["timeout"]), int(spec["server_pid"])
    body = json.dumps(spec["body"], separators=(",", ":")).encode()
    request = (f"POST {spec.get('path', '/v1/responses')} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
               f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(body)}\r\n"
               f"Connection: close\r\n\r\n").encode() + body
    if spec.get("cpu") is not None:
        os.sched_setaffinity(0, {int(spec["cpu"])})
    phase = _Phase(spec)
    loop_errors: list[str] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda loop, ctx: loop_errors.append(f"{ctx.get('message')}: {ctx.get('exception')!r}"))

    gc.disable()  # the client keeps almost nothing alive: no collector pauses in the measured window
    srv0, cpu0 = proc_cpu_seconds(server_pid), resource.getrusage(resource.RUSAGE_SELF)
    (busy0, steal0), own0 = machine_cpu_seconds(), _self_and_children_cpu(server_pid)
    t0 = time.time()
    workers = await asyncio.wait_for(
        asyncio.gather(*(_worker(request, phase, port, rounds, timeout) for _ in range(concurrency))),
        rounds * timeout + 10)
    streams = [s for w in workers for s in w]
    t1 = max(s.ended_at for s in streams)
    cpu1, srv1 = resource.getrusage(resource.RUSAGE_SELF), proc_cpu_seconds(server_pid)
    (busy1, steal1), own1 = machine_cpu_seconds(), _self_and_children_cpu(server_pid)
    gc.enable()

    wall = max(t1 - t0, 1e-9)
    events = sum(s.frames for s in streams)
    errors = collections.Counter(s.error.split(" after ")[0] for s in streams if s.error)
    durations = sorted(s.ended_at - s.started_at for s in streams)
    ok = [s for s in streams if not s.error]
    connects = sorted(s.connected_at - s.started_at for s in ok)
    headers = sorted(s.headers_at - s.started_at for s in ok)
    result: dict[str, Any] = {
        "concurrency": concurrency, "rounds": rounds, "streams": len(streams), "events": events, "wall": wall,
        "events_per_s": events / wall, "errors": sum(errors.values()), "error_kinds": dict(errors),
        "error_example": next((s.error for s in streams if s.error), None),
        "client_cpu": (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / wall,
        "client_user": (cpu1.ru_utime - cpu0.ru_utime) / wall,
        "server_cpu": (srv1 - srv0) / wall,
        "other_cpu": max(0.0, (busy1 - busy0) - (own1 - own0)) / wall, "steal": (steal1 - steal0) / wall,
        "duration_p50": percentile(durations, 50), "duration_p99": percentile(durations, 99),
        "connect_p99": percentile(connects, 99), "headers_p50": percentile(headers, 50),
        "headers_p99": percentile(headers, 99),
        "client_exceptions": len(loop_errors), "client_exception_example": loop_errors[0] if loop_errors else None,
    }
    if phase.delays is not None:
        delays, lags = sorted(phase.delays), sorted(phase.lags)
        result.update(samples=len(delays), delay_p50=percentile(delays, 50), delay_p99=percentile(delays, 99),
                      delay_max=delays[-1] if delays else None, lag_p50=percentile(lags, 50),
                      lag_p99=percentile(lags, 99), lag_max=lags[-1] if lags else None)
        # Steady state: deltas scheduled a second or more after every stream had started producing, so that
        # neither the ramp-up (connections, run creation) nor the catch-up bursts after it count.
        firsts = [s.first_emitted for s in streams if s.first_emitted is not None]
        ramp_end = max(firsts) if firsts else t0
        steady = sorted(lag for lag, at in zip(phase.lags, phase.emitted, strict=True) if at - lag > ramp_end + 1.0)
        result.update(ramp=ramp_end - t0, steady_samples=len(steady), steady_lag_p50=percentile(steady, 50),
                      steady_lag_p99=percentile(steady, 99), steady_lag_max=steady[-1] if steady else None)
    return result


def client_entry(spec_json: str) -> int:
    import uvloop

    result = uvloop.run(_client_main(json.loads(spec_json)))
    print(json.dumps(result), flush=True)
    return 0


# =====================================================================================================================
# The peer: a bare Starlette app (``bench_server.py _peer FRAMES_FILE``), served as ``python -m mock_server`` serves
# the mock: the same uvicorn.Config arguments and the same asyncio.run start-up.
# =====================================================================================================================


def peer_entry(frames_file: str) -> int:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    frames = split_frames(Path(frames_file).read_bytes())
    whole = b"".join(frames)
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}

    async def each_frame() -> Any:
        for frame in frames:
            yield frame

    async def one_chunk() -> Any:
        yield whole

    async def per_frame(request: Request) -> StreamingResponse:
        await request.body()
        return StreamingResponse(each_frame(), media_type="text/event-stream; charset=utf-8", headers=headers)

    async def whole_stream(request: Request) -> StreamingResponse:
        await request.body()
        return StreamingResponse(one_chunk(), media_type="text/event-stream; charset=utf-8", headers=headers)

    app = Starlette(routes=[Route("/v1/responses", per_frame, methods=["POST"]),
                            Route("/whole/v1/responses", whole_stream, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=0, log_level="warning", timeout_graceful_shutdown=2))

    async def serve() -> None:
        task = asyncio.ensure_future(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            print(f"Peer on http://{HOST}:{port}/v1 ({len(frames)} frames per stream)", flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0 if server.started else 1


# =====================================================================================================================
# Profiles (py-spy raw output: one collapsed stack and its sample count per line)
# =====================================================================================================================


def summarize_profile(path: Path, top: int = 18) -> str:
    def where(frame: str) -> str:
        frame = re.sub(r"\S*/site-packages/|\S*/lib/python3\.\d+/|" + re.escape(str(PROJECT)) + "/", "", frame)
        return re.sub(r":\d+\)$", ")", frame)

    def component(frame: str) -> str:
        m = re.search(r"\(([\w.]+)/", frame)
        return m.group(1) if m else ("stdlib" if "(" in frame else frame)

    rows: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        text, _, count = line.rpartition(" ")
        if text:
            rows.append(([where(f) for f in text.split(";")], int(count)))
    total = sum(n for _, n in rows)
    if not total:
        return f"{path.name}: no samples"
    own: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for stack, n in rows:
        own[stack[-1]] += n
        parts[component(stack[-1])] += n
        for frame in set(stack):
            if "mock_server/" in frame and "__main__" not in frame:
                inclusive[frame] += n
    out = [f"{path.name}: {total} samples; self time by package: "
           + ", ".join(f"{k} {v / total:.0%}" for k, v in parts.most_common(6))]
    out.append("  self time, top functions:")
    out += [f"    {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    out.append("  inclusive time in mock_server functions (approximate: py-spy sees coroutine stacks in part):")
    out += [f"    {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top // 2)]
    return "\n".join(out)


# =====================================================================================================================
# The orchestrator
# =====================================================================================================================


class Child:
    """A server subprocess whose output goes to files; ready once its banner shows a port; stopped by its PID."""

    def __init__(self, name: str, argv: list[str], workdir: Path, banner: str, cpu: int | None) -> None:
        self.name = name
        self.out, self.err = workdir / f"{name}.out", workdir / f"{name}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=PROJECT)
        self.pid = self.proc.pid
        if cpu is not None:
            os.sched_setaffinity(self.pid, {cpu})
        self.port = self._wait_ready(re.compile(banner))

    def _wait_ready(self, banner: re.Pattern[str], timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = banner.search(self.out.read_text(errors="replace"))
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        err = self.err.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.name} did not start within {timeout:g}s (exit {self.proc.returncode}):\n{err}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


_USE_UVLOOP = "import asyncio, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="bench_server."))
        self.children: list[Child] = []
        self.helpers: list[subprocess.Popen[bytes]] = []  # the client and py-spy
        self.waited = False
        self.python = sys.executable
        cpus = sorted(os.sched_getaffinity(0))
        pin = args.pin and len(cpus) >= 2
        self.server_cpu: int | None = cpus[-1] if pin else None
        self.client_cpu: int | None = cpus[0] if pin else None

    # processes -------------------------------------------------------------------------------------------------
    def start_mock(self) -> Child:
        if self.args.server_loop == "uvloop":
            run = ["-c", _USE_UVLOOP + "from mock_server.__main__ import main; sys.exit(main(sys.argv[1:]))"]
        else:
            run = ["-m", "mock_server"]
        argv = [self.python, *run, "--host", HOST, "--port", "0", "--poll-retention", "3600",
                "--stream-retention", "3600"]
        child = Child("mock", argv, self.workdir, r"Mock Responses server on http://127\.0\.0\.1:(\d+)/v1",
                      self.server_cpu)
        self.children.append(child)
        return child

    def start_peer(self, frames_file: Path) -> Child:
        if self.args.server_loop == "uvloop":
            run = ["-c", _USE_UVLOOP + "import runpy; sys.argv = sys.argv[1:]; "
                   "runpy.run_path(sys.argv[0], run_name='__main__')"]
        else:
            run = []
        child = Child("peer", [self.python, *run, str(HERE), "_peer", str(frames_file)], self.workdir,
                      r"Peer on http://127\.0\.0\.1:(\d+)/v1", self.server_cpu)
        self.children.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for proc in self.helpers:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        for child in list(self.children):
            self.stop(child)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # load ------------------------------------------------------------------------------------------------------
    @staticmethod
    def request_body(tokens: int, tps: float) -> dict[str, Any]:
        return {"model": "bench", "input": PROMPT, "background": True, "stream": True,
                "metadata": {"mock_options": f"tokens={tokens},tps={tps:g},ttft=0,queue_delay=0,timestamps=1"}}

    def drive(self, server: Child, concurrency: int, tokens: int, tps: float = 0.0, *, rounds: int = 1,
              delays: bool = False, timeout: float = 60.0, path: str = "/v1/responses") -> dict[str, Any]:
        spec = {"port": server.port, "server_pid": server.pid, "concurrency": concurrency, "rounds": rounds,
                "body": self.request_body(tokens, tps), "tps": tps, "delays": delays, "timeout": timeout,
                "path": path, "cpu": self.client_cpu}
        limit = rounds * timeout + 30
        client = subprocess.Popen([self.python, str(HERE), "_client", json.dumps(spec)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=PROJECT)
        self.helpers.append(client)
        try:
            out, err = client.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.kill(client.pid, signal.SIGKILL)
            client.communicate(timeout=5)
            raise RuntimeError(f"the client did not finish within {limit:g}s") from None
        finally:
            self.helpers.remove(client)
        if server.proc.poll() is not None:
            raise RuntimeError(f"the {server.name} server exited (code {server.proc.returncode}) during the run:\n"
                               f"{server.err.read_text(errors='replace')[-2000:]}")
        if client.returncode != 0:
            raise RuntimeError(f"the client failed (exit {client.returncode}):\n{err.decode()[-3000:]}")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        if result["client_exceptions"]:
            raise RuntimeError(f"the client hit {result['client_exceptions']} unexpected exceptions, e.g. "
                               f"{result['client_exception_example']}")
        return result

    def capture(self, server: Child, tokens: int) -> bytes:
        """One real unpaced event stream of the mock server, chunked transfer encoding removed."""
        import http.client

        conn = http.client.HTTPConnection(HOST, server.port, timeout=20)
        try:
            conn.request("POST", "/v1/responses", json.dumps(self.request_body(tokens, 0)),
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"capture failed: HTTP {response.status}: {data[:500]!r}")
        finally:
            conn.close()
        frames = split_frames(data)
        if len(frames) != tokens + 9 or not frames[-1].startswith(b"event: response.completed\n"):
            raise RuntimeError(f"unexpected capture: {len(frames)} frames, the last {frames[-1][:60]!r}")
        return data

    def wait_quiet(self) -> None:
        """Wait (up to --quiet-wait seconds) until processes outside the bench use under 10% of a CPU."""
        deadline = time.monotonic() + self.args.quiet_wait
        while True:
            busy0, _ = machine_cpu_seconds()
            ours0 = sum(proc_cpu_seconds(c.pid) for c in self.children) + proc_cpu_seconds(os.getpid())
            time.sleep(0.5)
            busy1, _ = machine_cpu_seconds()
            ours1 = sum(proc_cpu_seconds(c.pid) for c in self.children) + proc_cpu_seconds(os.getpid())
            other = ((busy1 - busy0) - (ours1 - ours0)) / 0.5
            if other < 0.1 or time.monotonic() > deadline:
                return
            if not self.waited:
                print(f"  (waiting up to {self.args.quiet_wait:g}s for other processes to go quiet: they use "
                      f"{other:.0%} of a CPU)", flush=True)
                self.waited = True

    def warm_up(self, server: Child, tokens: int, path: str = "/v1/responses") -> None:
        result = self.drive(server, 20, tokens, rounds=2, timeout=30, path=path)
        if result["errors"]:
            raise RuntimeError(f"warm-up of {server.name} failed: {result['error_kinds']}, "
                               f"e.g. {result['error_example']}")

    def start_profile(self, server: Child, name: str, delay: float, seconds: float) -> threading.Timer | None:
        """py-spy on the server from ``delay`` seconds on (after the ramp-up), for ``seconds``."""
        if not self.args.profile:
            return None
        spy = shutil.which("py-spy", path=str(Path(self.python).parent)) or shutil.which("py-spy")
        if spy is None:
            print("  (py-spy not found: pip install py-spy; no profile)", flush=True)
            return None
        out = Path(self.args.profile) / f"{name}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)

        def start() -> None:
            self.helpers.append(subprocess.Popen(
                [spy, "record", "--pid", str(server.pid), "--rate", "200", "--format", "raw", "--nonblocking",
                 "--duration", str(max(1, round(seconds))), "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        timer = threading.Timer(delay, start)
        timer.start()
        return timer

    def finish_profile(self, timer: threading.Timer | None) -> None:
        if timer is None:
            return
        timer.cancel()
        for proc in list(self.helpers):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            self.helpers.remove(proc)

    # phases ----------------------------------------------------------------------------------------------------
    def mock_phase(self, name: str, concurrency: int, tokens: int, tps: float, *, rounds: int, delays: bool,
                   timeout: float, profile: tuple[float, float] | None = None) -> dict[str, Any]:
        server = self.start_mock()
        try:
            self.warm_up(server, tokens)
            time.sleep(0.3)
            rss0 = proc_rss_kib(server.pid)
            self.wait_quiet()
            timer = self.start_profile(server, name, *profile) if profile else None
            result = self.drive(server, concurrency, tokens, tps, rounds=rounds, delays=delays, timeout=timeout)
            self.finish_profile(timer)
            time.sleep(0.3)
            rss1 = proc_rss_kib(server.pid)
            result.update(rss0=rss0, rss1=rss1, kib_per_run=(rss1 - rss0) / result["streams"])
            return result
        finally:
            self.stop(server)

    def run(self) -> None:
        a = self.args
        print(f"bench_server: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, client on uvloop in its own "
              "process" + (f", server under test pinned to CPU {self.server_cpu} and client to CPU {self.client_cpu}"
                           if self.server_cpu is not None else "")
              + ("; PROFILING (py-spy slows the server: figures are not comparable)" if a.profile else ""),
              flush=True)
        rows: list[tuple[str, str, dict[str, Any]]] = []
        notes: list[str] = []
        if a.only in (None, "unpaced"):
            self.run_unpaced(rows, notes)
        if a.only in (None, "paced"):
            self.run_paced(rows, notes)
        self.report(rows, notes)

    def run_unpaced(self, rows: list[tuple[str, str, dict[str, Any]]], notes: list[str]) -> None:
        a = self.args
        concurrencies = a.streams or ([50] if a.quick else [200, 1000])
        tokens = a.tokens or (50 if a.quick else 200)
        repeat = a.repeat or (1 if a.quick else 5)
        min_streams = 100 if a.quick else 1000

        mock = self.start_mock()
        try:
            self.warm_up(mock, tokens)
            body = self.capture(mock, tokens)
            mock_libs = proc_libs(mock.pid)
        finally:
            self.stop(mock)
        frames_file = self.workdir / "frames.sse"
        frames_file.write_bytes(body)
        peer = self.start_peer(frames_file)
        try:
            self.warm_up(peer, tokens)
            self.warm_up(peer, tokens, "/whole/v1/responses")
            print(f"unpaced (tps=0): {tokens} tokens = {tokens + 9} events = {len(body) / 1024:.1f} KiB of SSE per "
                  f"stream, captured from the mock server and replayed by the peer; mock server: {mock_libs}, "
                  f"peer: {proc_libs(peer.pid)}", flush=True)
            for n in concurrencies:
                rounds = a.rounds or max(1, math.ceil(min_streams / n))
                timeout = 60 + rounds * n * (tokens + 9) / 5000
                results: dict[str, list[dict[str, Any]]] = {"mock": [], "peer": [], "peer-1chunk": []}
                for rep in range(repeat):
                    for who, runs in results.items():
                        started = time.monotonic()
                        if who == "mock":
                            profile = (0.3, 2.5) if rep == 0 and n == concurrencies[-1] else None
                            r = self.mock_phase(f"unpaced-{n}", n, tokens, 0, rounds=rounds, delays=False,
                                                timeout=timeout, profile=profile)
                        else:
                            path = "/v1/responses" if who == "peer" else "/whole/v1/responses"
                            self.wait_quiet()
                            # The one-chunk peer is ~4x faster: 3x the streams keep its window as long as the others'.
                            more = 1 if who == "peer" or a.rounds else 3
                            r = self.drive(peer, n, tokens, rounds=rounds * more, timeout=timeout, path=path)
                        runs.append(r)
                        label = f"{who:<11} unpaced N={n} x{r['rounds']} run {rep + 1}/{repeat}"
                        print(f"  [{label}] {_progress(r, started)}", flush=True)
                best = {}
                for who, runs in results.items():
                    usable = sorted([r for r in runs if _undisturbed(r)] or runs, key=lambda r: r["events_per_s"])
                    rates = [r["events_per_s"] for r in usable]
                    best[who] = {**usable[(len(usable) - 1) // 2],
                                 "spread": (rates[-1] - rates[0]) / max(rates[-1], 1e-9),
                                 "runs": f"{len(usable)}/{len(runs)}", "errors": sum(r["errors"] for r in runs)}
                    rows.append(("unpaced", who, best[who]))
                # The ratios pair runs made back to back (the machine's speed drifts over tens of seconds on a
                # shared VM), and take the median over the repetitions in which no run was disturbed.
                reps = [tuple(results[k][i] for k in ("mock", "peer", "peer-1chunk")) for i in range(repeat)]
                paired = [rep for rep in reps if all(map(_undisturbed, rep))] or reps
                vs_peer = sorted(m["events_per_s"] / max(p["events_per_s"], 1e-9) for m, p, _ in paired)
                vs_whole = sorted(m["events_per_s"] / max(w["events_per_s"], 1e-9) for m, _, w in paired)
                m, p, w = (best[k]["events_per_s"] for k in ("mock", "peer", "peer-1chunk"))
                mid = (len(paired) - 1) // 2
                notes.append(f"N={n:<5} mock server throughput = {vs_peer[mid]:.0%} of bare Starlette "
                             f"(one frame per chunk; median over {len(paired)} back-to-back runs of both, range "
                             f"{vs_peer[0]:.0%}-{vs_peer[-1]:.0%}; medians {m:,.0f} vs {p:,.0f} events/s)")
                notes.append(f"{'':<7} mock server throughput = {vs_whole[mid]:.0%} of bare Starlette sending each "
                             f"stream as one chunk, as the mock does unpaced (range {vs_whole[0]:.0%}-"
                             f"{vs_whole[-1]:.0%}; medians {m:,.0f} vs {w:,.0f} events/s)")
            notes.append(f"unpaced rows: the median of the runs (of {repeat}) during which other processes stayed "
                         "under 10% of a CPU (all runs if none did); runs = runs used / made; spread = (best - worst) "
                         "/ best among them; each of the 'conc' slots runs streams back to back until 'streams' are "
                         "done.")
        finally:
            self.stop(peer)

    def run_paced(self, rows: list[tuple[str, str, dict[str, Any]]], notes: list[str]) -> None:
        a = self.args
        streams = a.paced_streams or (50 if a.quick else 1000)
        tokens = a.paced_tokens or (40 if a.quick else 200)
        tps = a.tps
        scheduled = (tokens - 1) / tps
        started = time.monotonic()
        r = self.mock_phase(f"paced-{streams}", streams, tokens, tps, rounds=1, delays=True,
                            timeout=scheduled * 3 + 60, profile=(min(3.0, scheduled / 3), min(6.0, scheduled / 2)))
        print(f"  [mock        paced N={streams} tps={tps:g}] {_progress(r, started)}", flush=True)
        r["spread"] = None
        r["kept_pace"] = r["steady_lag_p99"] is not None and r["steady_lag_p99"] < 1 / tps
        rows.append((f"paced {tps:g}/s", "mock", r))
        notes.append(f"paced: {streams} streams x {tps:g} deltas/s = {streams * tps:,.0f} deltas/s offered "
                     f"({tokens} deltas = {scheduled:.2f}s of schedule per stream). Ramp-up: every stream was "
                     f"producing {r['ramp']:.2f}s after the first connect (connect p99 {_ms(r['connect_p99'])} ms, "
                     f"response headers p50/p99 {_ms(r['headers_p50'])}/{_ms(r['headers_p99'])} ms); streams took "
                     f"{r['duration_p50']:.2f}s p50 / {r['duration_p99']:.2f}s p99.")
        notes.append(f"       pacing lag over the whole run p50/p99/max {_ms(r['lag_p50'])}/{_ms(r['lag_p99'])}/"
                     f"{_ms(r['lag_max'])} ms; from 1 s after the ramp-up on ({r['steady_samples']:,} deltas) "
                     f"{_ms(r['steady_lag_p50'])}/{_ms(r['steady_lag_p99'])}/{_ms(r['steady_lag_max'])} ms: the "
                     f"server {'kept' if r['kept_pace'] else 'did NOT keep'} the pace once all streams were up "
                     f"(criterion: steady lag p99 < one tick = {1000 / tps:.0f} ms).")
        notes.append("delay = client receive time - mock_emitted_at of each delta; lag = mock_emitted_at - the "
                     "stream's schedule (its first delta + k/tps): how late the server's pacing loop ran.")

    def report(self, rows: list[tuple[str, str, dict[str, Any]]], notes: list[str]) -> None:
        print()
        head = (f"{'mode':<11} {'server':<11} {'conc':>5} {'streams':>7} {'events':>7} {'wall s':>6} "
                f"{'events/s':>8} {'runs':>4} {'spread':>6} {'errors':>6} {'delay p50/p99 ms':>16} "
                f"{'lag p99 all/steady':>18} "
                f"{'srv CPU':>7} {'cli CPU':>7} {'others':>6} {'limited by':>10} {'RSS MB':>9} {'KiB/run':>7}")
        print(head)
        print("-" * len(head))
        for mode, who, r in rows:
            delay = f"{_ms(r.get('delay_p50'))}/{_ms(r.get('delay_p99'))}" if "delay_p50" in r else "-"
            lag = f"{_ms(r.get('lag_p99'))}/{_ms(r.get('steady_lag_p99'))}" if "lag_p99" in r else "-"
            rss = f"{r['rss0'] / 1024:.0f}>{r['rss1'] / 1024:.0f}" if "rss0" in r else "-"
            per_run = f"{r['kib_per_run']:.0f}" if "kib_per_run" in r else "-"
            spread = "-" if r["spread"] is None else f"{r['spread']:.0%}"
            print(f"{mode:<11} {who:<11} {r['concurrency']:>5} {r['streams']:>7} {r['events']:>7} {r['wall']:>6.2f} "
                  f"{r['events_per_s']:>8,.0f} {r.get('runs', '1/1'):>4} {spread:>6} {r['errors']:>6} {delay:>16} "
                  f"{lag:>18} {r['server_cpu']:>7.0%} {r['client_cpu']:>7.0%} {r['other_cpu']:>6.0%} {_limit(r):>10} "
                  f"{rss:>9} {per_run:>7}")
        print()
        for line in notes:
            print(line)
        print("others = CPU used by processes outside this benchmark during the window (should be ~0%). "
              "limited by: 'server' = server process >= 90% of a CPU; 'client' = client >= 85% while the server is "
              "not; 'pace' = a paced run that kept its schedule. RSS/KiB per run: mock server before>after the "
              "phase, its runs kept in memory.")
        for mode, who, r in rows:
            if r["errors"]:
                print(f"ERRORS in {mode} {who} N={r['concurrency']}: {r['error_kinds']}, e.g. {r['error_example']}")
            if r["other_cpu"] > 0.1 or r["steal"] > 0.05:
                print(f"WARNING: other processes used {r['other_cpu']:.0%} of a CPU (steal {r['steal']:.0%}) during "
                      f"{mode} {who} N={r['concurrency']}: that figure may be low; rerun on a quiet machine")
            if _limit(r) == "client":
                print(f"WARNING: the client limited {mode} {who} N={r['concurrency']}: that figure is a floor")
        if self.args.profile:
            for path in sorted(Path(self.args.profile).glob("*.txt")):
                print()
                print(summarize_profile(path))


def _undisturbed(r: dict[str, Any]) -> bool:
    """Whether other processes left the machine alone during the run."""
    return bool(r["other_cpu"] <= 0.1 and r["steal"] <= 0.05)


def _progress(r: dict[str, Any], started: float) -> str:
    return (f"{r['events_per_s']:>9,.0f} events/s, {r['errors']} errors, server CPU {r['server_cpu']:.0%}, client CPU "
            f"{r['client_cpu']:.0%}, other processes {r['other_cpu']:.0%} ({time.monotonic() - started:.1f}s)")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}" if abs(v) >= 0.1 else f"{v * 1000:.1f}"


def _limit(r: dict[str, Any]) -> str:
    if r.get("kept_pace"):
        return "pace"
    if r["server_cpu"] >= 0.9:
        return "server"
    if r["client_cpu"] >= 0.85:
        return "client"
    return "?"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_client"]:
        return client_entry(argv[1])
    if argv[:1] == ["_peer"]:
        return peer_entry(argv[1])

    parser = argparse.ArgumentParser(description="Capacity benchmark of the mock Responses server against a bare "
                                                 "Starlette peer. See bench/README.md.")
    parser.add_argument("--streams", type=int, action="append", metavar="N",
                        help="concurrent streams of an unpaced run (repeatable; default 200 and 1000)")
    parser.add_argument("--rounds", type=int,
                        help="streams each concurrent slot runs back to back (default: enough for 1000 streams)")
    parser.add_argument("--tokens", type=int, help="deltas per stream in unpaced runs (default 200)")
    parser.add_argument("--repeat", type=int, help="unpaced runs per server and N; the median is kept (default 5)")
    parser.add_argument("--paced-streams", type=int, help="concurrent streams of the paced run (default 1000)")
    parser.add_argument("--paced-tokens", type=int, help="deltas per stream of the paced run (default 200)")
    parser.add_argument("--tps", type=float, default=20.0, help="deltas per second per paced stream (default 20)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin the server under test and the client to separate CPUs")
    parser.add_argument("--only", choices=("unpaced", "paced"), help="run only one of the two benchmarks")
    parser.add_argument("--quiet-wait", type=float, default=20.0, metavar="SECONDS",
                        help="before each measured run, wait up to this long for other processes to go quiet "
                             "(default 20; 0 = do not wait)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: 50 streams, short replies")
    parser.add_argument("--server-loop", choices=("as-started", "uvloop"), default="as-started",
                        help="run both servers as `python -m mock_server` runs (default), or force uvloop on both")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the mock server (unpaced at the largest N, and "
                        "paced) into DIR and print where its time goes; slows the server")
    args = parser.parse_args(argv)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * max([*(args.streams or [1000]), args.paced_streams or 1000]) + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (background job)
    bench = Bench(args)
    try:
        bench.run()
    except KeyboardInterrupt:
        print("\nbench_server: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench_server: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
