"""``%%agent`` and ``%agent``: start, watch, list, resume and cancel background runs from notebook cells."""

from __future__ import annotations

import argparse
import hashlib
import html
import os
import shlex
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display
from traitlets import Bool, Float, Int, Unicode

from .._agent import Agent, AgentSession
from .._client import ResponsesClient, RetryPolicy
from .._errors import AgentNBError
from .._loop import BackgroundLoop
from .._store import RunRecord, RunStore, default_store
from ._handle import NotebookRun
from ._widget import RunWidget

__all__ = ["AgentMagics"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the kernel's process
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage()}")


def _cell_parser() -> _Parser:
    parser = _Parser(prog="%%agent", add_help=False,
                     description="Start a background run with the cell as the prompt; returns at once.")
    parser.add_argument("--model", help="model for this run")
    parser.add_argument("--instructions", help="system instructions for this run")
    parser.add_argument("--session", help="a conversation name: a later cell in the same session continues it")
    parser.add_argument("--poll", nargs="?", type=float, const=-1.0, metavar="SECONDS",
                        help="poll instead of streaming (every SECONDS, default AgentMagics.poll_interval)")
    parser.add_argument("--wait", action="store_true", help="block until the run ends (for executed notebooks)")
    parser.add_argument("-o", "--out", metavar="NAME", help="bind the run object to this variable")
    parser.add_argument("--name", help="a label shown in %%agent runs")
    parser.add_argument("--new", action="store_true", help="start a fresh run even if this cell's run is unfinished")
    parser.add_argument("--max-output-tokens", type=int, help="cap the reply length")
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE", help="request metadata")
    return parser


@magics_class
class AgentMagics(Magics):  # type: ignore[misc]
    """The ``%%agent`` cell magic and the ``%agent`` line magic. Options are configurable with ``%config``."""

    model = Unicode(os.environ.get("AGENT_NB_MODEL", "gpt-4.1"), help="Default model for %%agent.").tag(config=True)
    instructions = Unicode(os.environ.get("AGENT_NB_INSTRUCTIONS", ""),
                           help="Default system instructions for %%agent.").tag(config=True)
    base_url = Unicode(None, allow_none=True,
                       help="API base URL (default: OPENAI_BASE_URL, Azure settings, else the bundled mock server)."
                       ).tag(config=True)
    poll_interval = Float(2.0, help="Seconds between polls with --poll.").tag(config=True)
    max_retries = Int(6, help="Reconnection attempts in a row before a run shows 'connection lost'.").tag(config=True)
    stall_timeout = Float(60.0, help="Seconds without data before a stream counts as dropped.").tag(config=True)
    wait_by_default = Bool(False, help="Behave as if every %%agent cell had --wait.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.sessions: dict[str, AgentSession] = {}
        self.last_in_session: dict[str, NotebookRun] = {}
        self.runs: list[NotebookRun] = []
        self._agent: Agent | None = None
        self._agent_key: tuple[Any, ...] | None = None
        self.mock: Any = None

    # -- the agent ----------------------------------------------------------------------------------------------
    @property
    def store(self) -> RunStore:
        return default_store()

    def agent(self) -> Agent:
        """The agent the magics use, rebuilt when the configuration changes."""
        base_url = self.base_url or (self.mock.url if self.mock is not None and self.mock.running else None)
        key = (base_url, self.max_retries, self.stall_timeout, os.environ.get("AGENT_NB_HOME"))
        if self._agent is None or self._agent_key != key:
            retry = RetryPolicy(max_retries=self.max_retries, stall_timeout=self.stall_timeout)
            api_key = "mock" if self.mock is not None and base_url == self.mock.url else None
            client = ResponsesClient(base_url, api_key, retry=retry)
            self._agent = Agent(client, model=self.model, store=self.store)
            self._agent_key = key
        return self._agent

    # -- %%agent / %agent ---------------------------------------------------------------------------------------
    @line_cell_magic("agent")  # type: ignore[misc,arg-type]
    def agent_magic(self, line: str, cell: str | None = None) -> Any:
        """``%%agent [options]`` runs the cell as a prompt; ``%agent COMMAND`` manages runs (``%agent help``)."""
        try:
            if cell is None:
                return self._command(line)
            return self._start(line, cell)
        except AgentNBError as exc:
            raise UsageError(str(exc)) from None

    def _start(self, line: str, cell: str) -> NotebookRun | None:
        args = _cell_parser().parse_args(shlex.split(line))
        prompt = cell.strip()
        if not prompt:
            raise UsageError("%%agent needs a prompt in the cell body.")
        agent = self.agent()
        cell_key = self._cell_key(cell, args.session)
        live = None if args.new else next(
            (h for h in reversed(self.runs) if h.cell_key == (cell_key, prompt) and h.running), None)
        existing = None if args.new or live is not None else self._unfinished_run_for(cell_key, prompt)
        if live is not None:
            handle = live
            handle.notice = ("This cell's run is still going: showing it again rather than paying for a new one; "
                             "run the cell with --new to start fresh.")
        elif existing is not None:
            handle = NotebookRun.attach(agent, existing.run_id, stream=args.poll is None,
                                        poll_interval=self._poll(args), name=existing.name)
            handle.notice = (f"Re-attached to this cell's unfinished run {existing.run_id} instead of paying for a "
                             "new one; run the cell with --new to start fresh.")
        else:
            session = None
            after = None
            if args.session:
                session = self.sessions.setdefault(args.session, AgentSession())
                after = self.last_in_session.get(args.session)
            options: dict[str, Any] = {"model": args.model or self.model, "labels": {"cell": cell_key}}
            instructions = args.instructions if args.instructions is not None else self.instructions
            if instructions:
                options["instructions"] = instructions
            if args.max_output_tokens:
                options["max_output_tokens"] = args.max_output_tokens
            if args.metadata:
                options["metadata"] = dict(_key_value(item) for item in args.metadata)
            handle = NotebookRun.start(agent, prompt, options=options, session=session, stream=args.poll is None,
                                       poll_interval=self._poll(args), after=after, name=args.name)
            if args.session:
                self.last_in_session[args.session] = handle
        handle.cell_key = (cell_key, prompt)
        self._show(handle, args.out, wait=args.wait or self.wait_by_default)
        return None

    def _show(self, handle: NotebookRun, out: str | None, *, wait: bool) -> None:
        if handle not in self.runs:
            self.runs.append(handle)
        if out and self.shell is not None:
            self.shell.user_ns[out] = handle
        widget = RunWidget.for_run(handle)
        widget.display_handle = display(widget, display_id=True)  # type: ignore[no-untyped-call]
        if wait:
            handle.wait()
            widget.refresh(force=True)
            if widget.display_handle is not None:
                widget.display_handle.update(widget)
        return None

    def _poll(self, args: argparse.Namespace) -> float:
        return self.poll_interval if args.poll is None or args.poll < 0 else float(args.poll)

    def _cell_key(self, cell: str, session: str | None) -> str:
        """This cell's identity: the front end's cell id when it sends one, else a hash of its text."""
        parent = getattr(getattr(self.shell, "kernel", None), "get_parent", lambda *a: None)()
        metadata = (parent or {}).get("metadata") or {}
        cell_id = metadata.get("cellId") or metadata.get("cell_id")
        if cell_id:
            return f"cell:{cell_id}"
        return "text:" + hashlib.sha256(f"{session}\0{cell}".encode()).hexdigest()[:16]

    def _unfinished_run_for(self, cell_key: str, prompt: str) -> RunRecord | None:
        for record in self.store.list(status=["starting", "queued", "in_progress", "lost"], limit=200):
            if record.labels.get("cell") == cell_key and record.prompt == prompt and record.response_id:
                if any(h.run_id == record.run_id and h.running for h in self.runs):
                    continue  # already followed in this kernel: that widget is live
                return record
        return None

    # -- %agent COMMAND -----------------------------------------------------------------------------------------
    def _command(self, line: str) -> Any:
        words = shlex.split(line)
        if not words or words[0] in ("help", "-h", "--help"):
            return _Help()
        command, rest = words[0], words[1:]
        if command == "runs":
            status = rest[0] if rest else None
            return RunTable(self.store.list(status=status, limit=50))
        if command == "resume":
            if len(rest) != 1:
                raise UsageError("Usage: %agent resume RUN_ID_OR_TOKEN")
            handle = NotebookRun.attach(self.agent(), rest[0])
            self._show(handle, None, wait=False)
            return None
        if command == "cancel":
            if len(rest) != 1:
                raise UsageError("Usage: %agent cancel RUN_ID_OR_TOKEN")
            live = next((h for h in self.runs if rest[0] in (h.run_id, h.response_id) and h.running), None)
            if live is not None:
                live.cancel()
                return f"Cancelled {rest[0]}: {live.status}."
            response = BackgroundLoop.get().submit(self.agent().cancel(rest[0])).result(30)
            return f"Cancelled {rest[0]}: {response.status}."
        if command == "mock":
            return self._mock(rest)
        raise UsageError(f"Unknown command %agent {command!r}. Try %agent help.")

    def _mock(self, words: list[str]) -> str:
        from mock_server import FaultSpec, GenerationOptions, MockServer, ServerConfig

        action = words[0] if words else "status"
        parser = _Parser(prog="%agent mock", add_help=False)
        parser.add_argument("--faults", default="", help="a fault spec, e.g. 'drop_after=40,drops=2'")
        parser.add_argument("--options", default="", help="pacing, e.g. 'tokens=300,tps=40'")
        parser.add_argument("--port", type=int, default=0)
        args = parser.parse_args(words[1:])
        if action == "start":
            if self.mock is not None and self.mock.running:
                self.mock.stop()
            config = ServerConfig(options=GenerationOptions.parse(args.options), faults=FaultSpec.parse(args.faults))
            self.mock = MockServer(config, port=args.port).start()
            return f"Mock server running at {self.mock.url}; %%agent cells now use it."
        if action == "stop":
            if self.mock is None or not self.mock.running:
                return "No mock server is running."
            self.mock.stop()
            return "Mock server stopped."
        if action == "faults":
            if self.mock is None or not self.mock.running:
                raise UsageError("Start the mock server first: %agent mock start")
            self.mock.set_faults(args.faults)
            return f"Mock server faults: {args.faults or 'none'}."
        if action == "status":
            if self.mock is not None and self.mock.running:
                return f"Mock server running at {self.mock.url}."
            return "No mock server is running (start one with %agent mock start)."
        raise UsageError("Usage: %agent mock start|stop|status|faults [--faults SPEC] [--options SPEC] [--port N]")


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"--metadata takes KEY=VALUE, got {item!r}.")
    return key, value


class RunTable:
    """The store's runs as a table (HTML in a notebook, text elsewhere)."""

    def __init__(self, records: list[RunRecord]) -> None:
        self.records = records

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        now = time.time()
        return [(r.name or r.prompt[:40].replace("\n", " "), r.status, _age(now - r.created_at), f"{len(r.text):,}",
                 r.run_id) for r in self.records]

    def __repr__(self) -> str:
        if not self.records:
            return "No runs in the store yet."
        header = ("name", "status", "age", "length", "run id")
        rows = [header, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)

    def _repr_html_(self) -> str:
        if not self.records:
            return "<p>No runs in the store yet.</p>"
        head = "".join(f"<th>{h}</th>" for h in ("name", "status", "age", "length", "run id"))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


class _Help:
    def __repr__(self) -> str:
        return (
            "%%agent [--model M] [--instructions TEXT] [--session NAME] [--poll [SECONDS]] [--wait] [-o NAME]\n"
            "        [--name LABEL] [--new] [--max-output-tokens N] [--metadata KEY=VALUE]\n"
            "    Start a background run with the cell as the prompt; the cell returns at once.\n"
            "%agent runs [STATUS]             list the stored runs\n"
            "%agent resume RUN_ID|TOKEN       re-attach to a run (from any kernel)\n"
            "%agent cancel RUN_ID|TOKEN       cancel a run\n"
            "%agent mock start|stop|status|faults [--faults SPEC] [--options SPEC]\n"
            "                                 the bundled mock server, with faults for demos"
        )

