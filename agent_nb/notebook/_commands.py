"""``%agent COMMAND``: list, resume, cancel runs and batches, and manage the mock servers."""

from __future__ import annotations

import argparse
import contextlib
import shlex
from typing import Any

import httpx
from IPython.core.error import UsageError

from .._agent import Agent
from .._bundled import find_bundled, stop_bundled
from .._errors import AgentNBError, StoredRunNotFound
from .._loop import BackgroundLoop
from .._store import RunRecord, RunStore
from .._store._ledger import BatchInfo
from .._store._record import STATUSES
from ._handle import NotebookRun
from ._tables import BatchTable, RunTable

__all__ = ["UNFINISHED", "Commands", "Parser", "split_words", "unfinished_summary"]

#: How many runs ``%agent runs`` shows at most.
RUNS_SHOWN = 50
#: Runs the service may still be working on.
UNFINISHED = ("starting", "queued", "in_progress", "waiting")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the kernel's process
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage()}")


class Commands:
    """The ``%agent COMMAND`` line magic's commands, mixed into :class:`~agent_nb.notebook.AgentMagics`."""

    runs: list[NotebookRun]
    mock: Any
    shell: Any

    @property
    def store(self) -> RunStore:
        raise NotImplementedError

    def agent(self) -> Agent:
        raise NotImplementedError

    def _named_agent(self, name: str) -> Agent:
        raise NotImplementedError

    def _show(self, handle: NotebookRun, out: str | None, *, wait: bool, notify: bool = False) -> None:
        raise NotImplementedError

    def _command(self, line: str) -> Any:
        words = split_words(line, "%agent")
        if not words or words[0] in ("help", "-h", "--help"):
            return _Help()
        command, rest = words[0], words[1:]
        if command == "runs":
            return self._runs(rest)
        if command == "batches":
            return self._batches(rest)
        if command == "resume":
            return self._resume(rest)
        if command == "cancel":
            return self._cancel(rest)
        if command == "mock":
            return self._mock(rest)
        raise UsageError(f"Unknown command %agent {command!r}. Try %agent help.")

    def _runs(self, words: list[str]) -> RunTable:
        parser = Parser(prog="%agent runs", add_help=False)
        parser.add_argument("status", nargs="?")
        parser.add_argument("--batch", metavar="NAME")
        args = parser.parse_args(words)
        status = args.status
        if status is not None and status not in STATUSES:
            raise UsageError(f"{status!r} is not a run status; use one of {', '.join(sorted(STATUSES))}.")
        if args.batch is not None:
            return self._batch_runs(args.batch, status)
        records = self.store.list(status=status, limit=RUNS_SHOWN)
        in_batches = sum(1 for r in records if "batch" in r.labels)
        note = (f"{in_batches} of these runs belong to batches: %agent runs --batch NAME lists one batch's runs, "
                "%agent batches the batches." if in_batches else None)
        return RunTable(records, status=status, note=note)

    def _batch_runs(self, name: str, status: str | None) -> RunTable:
        """The runs of the batch ``name`` (each item's latest), newest first."""
        items = self.store.ledger().items(name)
        if not items and self.store.ledger().get(name) is None:
            raise UsageError(f"%agent runs --batch {name}: there is no stored batch {name!r}; %agent batches lists "
                             "them.")
        records: list[RunRecord] = []
        for item in reversed(items):  # the latest inputs first
            if len(records) == RUNS_SHOWN:
                break
            if item.run_id is None:
                continue
            with contextlib.suppress(StoredRunNotFound):
                record = self.store.get(item.run_id)
                if status is None or record.status == status:
                    records.append(record)
        records.sort(key=lambda r: r.created_at, reverse=True)
        shown = f"the latest {len(records)} of its {len(items):,} items" if len(records) == RUNS_SHOWN else None
        return RunTable(records, status=status, note=f"Batch {name}: {shown}." if shown else None,
                        empty=f"No {status + ' ' if status else ''}runs in batch {name} yet.")

    def _batches(self, words: list[str]) -> BatchTable:
        if words:
            raise UsageError("Usage: %agent batches (it takes no options).")
        from ..batch import Batch  # the batch layer loads only when it is used

        return BatchTable(Batch.stored(self.store))

    def _resume(self, words: list[str]) -> str | None:
        if words == ["--all"]:
            records, batches = _unfinished(self.store, limit=200)
            followed = {h.run_id for h in self.runs if h.running}
            records = [r for r in records if r.run_id not in followed]
            for record in reversed(records):  # oldest first, like the cells that started them
                self._show(NotebookRun.attach(self.agent(), record.run_id), None, wait=False)
            batch_magics = self.shell.magics_manager.registry.get("BatchMagics") if self.shell is not None else None
            here = {name for name, b in getattr(batch_magics, "batches", {}).items() if b.working}
            left = _batches_line([b for b in batches if b.name not in here])
            if not records:
                return "No unfinished runs to re-attach to." + (f" {left}" if left else "")
            return left or None
        agent = self.agent()
        if len(words) == 3 and words[1] == "--agent":  # its tools answer the run's calls
            agent, words = self._named_agent(words[2]), words[:1]
        if len(words) != 1 or words[0].startswith("-"):
            raise UsageError("Usage: %agent resume RUN_ID_OR_TOKEN [--agent NAME], or %agent resume --all")
        self._show(NotebookRun.attach(agent, words[0]), None, wait=False)
        return None

    def _cancel(self, words: list[str]) -> str:
        if len(words) != 1:
            raise UsageError("Usage: %agent cancel RUN_ID_OR_TOKEN")
        target = words[0]
        live = next((h for h in self.runs if target in (h.run_id, h.response_id) and h.can_cancel), None)
        if live is not None:
            live.cancel()
            return f"Cancelled {target}: {live.status}."
        run = self.agent().resume(target, raise_on_failure=False)
        if run.terminal:
            return f"Run {target} had already ended ({run.status}); there was nothing to cancel."
        response = BackgroundLoop.get().submit(run.cancel()).result(30)
        if response.status != "cancelled":
            return f"Run {target} had already ended ({response.status}); there was nothing to cancel."
        return f"Cancelled {target}."

    def _mock(self, words: list[str]) -> str:
        from mock_server import FaultSpec, GenerationOptions, MockServer, ServerConfig
        from mock_server.server import PortUnavailable

        action = words[0] if words else "status"
        parser = Parser(prog="%agent mock", add_help=False)
        parser.add_argument("--faults", default="", help="a fault spec, e.g. 'drop_after=40,drops=2'")
        parser.add_argument("--options", default="", help="pacing, e.g. 'tokens=300,tps=40'")
        parser.add_argument("--port", type=int, default=0)
        parser.add_argument("--bundled", action="store_true", help="stop the bundled server, not this kernel's")
        args = parser.parse_args(words[1:])
        in_kernel = self.mock if self.mock is not None and self.mock.running else None
        if action == "start":
            if in_kernel is not None:
                in_kernel.stop()
            config = ServerConfig(options=GenerationOptions.parse(args.options), faults=FaultSpec.parse(args.faults))
            try:
                self.mock = MockServer(config, port=args.port).start()
            except PortUnavailable as exc:
                raise UsageError(f"%agent mock start: {exc}") from None
            return (f"Mock server running at {self.mock.url} in this kernel (it stops with the kernel); %%agent "
                    "cells now use it.")
        if action == "stop":
            if in_kernel is not None and not args.bundled:
                in_kernel.stop()
                return "This kernel's mock server stopped; %%agent cells use the bundled one again."
            stopped = stop_bundled()
            if stopped is None:
                return "No mock server is running."
            return (f"The bundled mock server at {stopped.url} (pid {stopped.pid}) stopped. Its runs are kept: it "
                    "starts again, with them, the next time a run needs it.")
        if action == "faults":
            target = in_kernel or find_bundled()
            if target is None:
                raise UsageError("No mock server is running: start one with %agent mock start.")
            httpx.put(target.base_url + "/mock/faults", json={"faults": args.faults}, timeout=10).raise_for_status()
            return f"Mock server faults: {args.faults or 'none'}."
        if action == "status":
            lines = []
            if in_kernel is not None:
                lines.append(f"This kernel's mock server runs at {in_kernel.url}; %%agent cells use it.")
            bundled = find_bundled()
            if bundled is not None:
                lines.append(f"The bundled mock server runs at {bundled.url} (pid {bundled.pid}, its own process, "
                             f"shared by every kernel; responses kept in {bundled.db}).")
            return "\n".join(lines) or ("No mock server is running. The bundled one starts by itself when a run "
                                        "needs it; %agent mock start starts one in this kernel.")
        raise UsageError("Usage: %agent mock start|stop|status|faults [--faults SPEC] [--options SPEC] [--port N] "
                         "[--bundled]")


def unfinished_summary(store: RunStore) -> str | None:
    """A line or two for %load_ext: how many of this machine's runs and batches may still be going, and how to
    re-attach to each (a batch's runs are left to their batch, which follows them by itself)."""
    try:
        records, batches = _unfinished(store, limit=1000)
    except AgentNBError:
        return None
    lines = []
    if records:
        names = ", ".join(r.name or r.run_id for r in records[:3]) + (", …" if len(records) > 3 else "")
        runs = "run is" if len(records) == 1 else "runs are"
        lines.append(f"agent-nb: {len(records)} {runs} unfinished on this machine ({names}); re-attach with "
                     "%agent resume --all, or %agent resume RUN_ID (%agent runs lists them).")
    if batches:
        lines.append("agent-nb: " + _batches_line(batches))
    return "\n".join(lines) or None


def _unfinished(store: RunStore, *, limit: int) -> tuple[list[RunRecord], list[BatchInfo]]:
    """The unfinished runs that belong to no batch, and the batches with unfinished items."""
    records = [r for r in store.list(status=UNFINISHED, limit=limit) if r.response_id and "batch" not in r.labels]
    batches = [b for b in store.ledger().list() if b.unfinished and b.state != "cancelled"]
    return records, batches


def _batches_line(batches: list[BatchInfo]) -> str:
    """What to run to re-attach to unfinished batches (``""`` for none)."""
    if not batches:
        return ""
    named = ", ".join(f"{b.name} ({b.unfinished:,} of {b.total:,} items unfinished)" for b in batches[:3])
    more = ", …" if len(batches) > 3 else ""
    which = "batch has" if len(batches) == 1 else "batches have"
    again = f"%agent_batch --name {shlex.quote(batches[0].name)}" if len(batches) == 1 else \
        "%agent_batch --name NAME"
    return (f"{len(batches)} {which} unfinished items: {named}{more}; re-attach with {again} (%agent batches lists "
            "them).")


def split_words(line: str, prog: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:  # an unbalanced quote
        raise UsageError(f"{prog}: cannot read the options ({exc}): close the quote, or escape it.") from None


class _Help:
    def __repr__(self) -> str:
        return (
            "%%agent [--agent NAME] [--model M] [--instructions TEXT] [--session NAME] [--poll [SECONDS]] [--wait]\n"
            "        [-o NAME] [--name LABEL] [--new] [--max-output-tokens N] [--metadata KEY=VALUE]\n"
            "    Start a background run with the cell as the prompt; the cell returns at once.\n"
            "%%agent_batch [--from VARIABLE] [--agent NAME] [--model M] [--instructions TEXT] [--name BATCH_NAME]\n"
            "        [--concurrency N] [--mode poll|stream] [--max-attempts N] [--rpm N] [--tpm N] [--wait]\n"
            "        [--max-output-tokens N] [--metadata KEY=VALUE] [-o NAME]\n"
            "    Start a batch: one background run per line of the cell, shown live; the same cell run again\n"
            "    re-attaches to its batch. %agent_batch --from VARIABLE [options]: one run per item of VARIABLE.\n"
            "%agent_batch --name BATCH_NAME   re-attach to a stored batch, as it was started (after a restart)\n"
            "%agent runs [STATUS] [--batch NAME]  list the stored runs (of one batch)\n"
            "%agent batches                   list the stored batches, newest first\n"
            "%agent resume RUN_ID|TOKEN [--agent NAME]  re-attach to a run (from any kernel; NAME answers its calls)\n"
            "%agent resume --all              re-attach to every unfinished run, one view each (a batch's runs\n"
            "                                 are left to their batch: it says how to re-attach to that)\n"
            "%agent cancel RUN_ID|TOKEN       cancel a run\n"
            "%agent mock status|stop          the bundled mock server (its own process, shared by every kernel)\n"
            "%agent mock start|faults [--faults SPEC] [--options SPEC]\n"
            "                                 a throwaway mock server in this kernel, with faults for demos"
        )

