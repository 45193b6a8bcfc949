"""``%%agent`` and ``%agent``: start, watch, list, resume and cancel background runs from notebook cells."""

from __future__ import annotations

import argparse
import hashlib
import os
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display
from traitlets import Bool, Float, Int, Unicode

from .._agent import Agent, AgentSession
from .._client import ResponsesClient, RetryPolicy
from .._config import resolve_endpoint
from .._errors import AgentNBError
from .._store import RunRecord, RunStore, default_store
from ._card import RunCard
from ._commands import UNFINISHED, Commands, Parser, split_words
from ._handle import NotebookRun
from ._widget import RunWidget

__all__ = ["AgentMagics"]


def _cell_parser() -> Parser:
    parser = Parser(prog="%%agent", add_help=False,
                     description="Start a background run with the cell as the prompt; returns at once.")
    parser.add_argument("--agent", metavar="NAME", help="run with the Agent bound to NAME (its tools, instructions)")
    parser.add_argument("--model", help="model for this run")
    parser.add_argument("--instructions", help="system instructions for this run")
    parser.add_argument("--session", help="a conversation name: a later cell in the same session continues it")
    parser.add_argument("--poll", nargs="?", type=float, const=-1.0, metavar="SECONDS",
                        help="poll instead of streaming (every SECONDS, default AgentMagics.poll_interval)")
    parser.add_argument("--wait", action="store_true", help="block until the run ends (for executed notebooks)")
    parser.add_argument("--notify", action="store_true",
                        help="tell me when the run ends (or waits for me): a desktop notification and the tab's title")
    parser.add_argument("-o", "--out", metavar="NAME", help="bind the run object to this variable")
    parser.add_argument("--name", help="a label shown in %%agent runs")
    parser.add_argument("--new", action="store_true", help="start a fresh run even if this cell's run is unfinished")
    parser.add_argument("--max-output-tokens", type=int, help="cap the reply length")
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE", help="request metadata")
    return parser


@magics_class
class AgentMagics(Magics, Commands):  # type: ignore[misc]
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
    notify = Bool(False, help="Behave as if every %%agent cell had --notify.").tag(config=True)

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
        """The agent the magics use, rebuilt when the configuration changes (or the bundled server moved)."""
        base_url = self.base_url or (self.mock.url if self.mock is not None and self.mock.running else None)
        endpoint = None
        if base_url is None:
            endpoint = resolve_endpoint()  # the environment's, else the bundled server, started if need be
            base_url = endpoint.base_url
        key = (base_url, self.max_retries, self.stall_timeout, os.environ.get("AGENT_NB_HOME"))
        if self._agent is None or self._agent_key != key:
            retry = RetryPolicy(max_retries=self.max_retries, stall_timeout=self.stall_timeout)
            api_key = "mock" if self.mock is not None and base_url == self.mock.url else None
            client = ResponsesClient(endpoint=endpoint, retry=retry) if endpoint is not None else \
                ResponsesClient(base_url, api_key, retry=retry)
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
        args = _cell_parser().parse_args(split_words(line, "%%agent"))
        prompt = cell.strip()
        if not prompt:
            raise UsageError("%%agent needs a prompt in the cell body.")
        agent = self._named_agent(args.agent) if args.agent else self.agent()
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
            options: dict[str, Any] = {"model": args.model or (agent.model if args.agent else self.model),
                                       "labels": {"cell": cell_key}}
            instructions = args.instructions if args.instructions is not None else \
                (agent.instructions if args.agent else self.instructions)
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
        self._show(handle, args.out, wait=args.wait or self.wait_by_default, notify=args.notify or self.notify)
        return None

    def _named_agent(self, name: str) -> Agent:
        """The :class:`Agent` the notebook bound to ``name`` (``--agent NAME``)."""
        namespace = self.shell.user_ns if self.shell is not None else {}
        if name not in namespace:
            raise UsageError(f"--agent {name}: nothing is called {name!r} in this notebook; create it first, e.g. "
                             f"{name} = Agent(tools=[...]).")
        agent = namespace[name]
        if not isinstance(agent, Agent):
            raise UsageError(f"--agent {name}: {name!r} is a {type(agent).__name__}, not an agent_nb Agent (make one "
                             "with Agent(...) or OpenAIResponsesClient(...).as_agent(...)).")
        return agent

    def _show(self, handle: NotebookRun, out: str | None, *, wait: bool, notify: bool = False) -> None:
        """Display the run: its saved view, which stands in for it once the kernel is gone (hidden while the live
        view works), then its live view; a run already over is shown by its saved view alone."""
        if handle not in self.runs:
            self.runs.append(handle)
        if out and self.shell is not None:
            self.shell.user_ns[out] = handle
        if handle.finished:
            display(RunCard(handle))  # type: ignore[no-untyped-call]
            return
        widget = RunWidget.for_run(handle)
        if notify:
            widget.enable_notifications()
        if getattr(self.shell, "kernel", None) is not None:  # a notebook front end, not a terminal (which would print
            # every update of the saved view): the saved view first, so that a reopened notebook starts with it
            widget.saved_handle = display(RunCard(handle), display_id=True)  # type: ignore[no-untyped-call]
        widget.display_handle = display(widget, display_id=True)  # type: ignore[no-untyped-call]
        if wait:
            handle.wait()
            widget.refresh(force=True)
        if handle.finished:  # it may have ended before the displays existed
            widget.end()

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
        """This cell's run the service may still be working on (a lost one is not: the cell then starts afresh)."""
        for record in self.store.list(status=UNFINISHED, limit=200):
            if record.labels.get("cell") == cell_key and record.prompt == prompt and record.response_id:
                if any(h.run_id == record.run_id and h.running for h in self.runs):
                    continue  # already followed in this kernel: that widget is live
                return record
        return None

    # -- %agent COMMAND -----------------------------------------------------------------------------------------
def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"--metadata takes KEY=VALUE, got {item!r}.")
    return key, value


