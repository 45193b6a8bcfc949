"""``%%agent_batch``: a batch of background runs from a notebook cell, one prompt a line, shown live by a
:class:`~agent_nb.notebook.BatchWidget`; or ``%agent_batch --from VARIABLE`` for prompts the notebook already has.

With ``--from VARIABLE`` (a list, a dict of key to prompt, or a pandas Series) the prompts come from the variable, so
the line magic is the form to use; as a cell magic the body must then be blank, since a prompt there would otherwise
be silently left out (a UsageError says so). Without ``--name`` the batch is
named ``cell-`` and 12 hex digits of a hash of what it asks (its inputs, model, instructions, options, tools and
endpoint), so running the same cell again, after a kernel restart too, re-attaches to its batch instead of paying for
it twice, while an edited prompt or model makes a new batch. ``--concurrency``, ``--mode``, ``--rpm`` … change only
how it is worked, not its name.

``%agent_batch --name NAME`` with no prompts re-attaches to the stored batch NAME as it was started (after a kernel
restart, say): the form the batch's view and ``%load_ext`` suggest, since it does not need the cell that started it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

from .._agent import Agent
from .._errors import AgentNBError
from ..batch import Batch, RateLimit
from ..batch._inputs import normalise_inputs
from ..batch._spec import MODES, BatchSpec
from ._batch_view import BatchWidget
from ._commands import Parser, split_words
from ._magics import _key_value

__all__ = ["BatchMagics", "cell_batch_name"]

#: The spec's fields that name a batch made from a cell: what each item is asked, and where.
_NAMED_BY = ("model", "instructions", "options", "tools", "functions", "endpoint")


class _Parser(Parser):
    def error(self, message: str) -> Any:  # one sentence, not the long usage: %agent help has that
        raise UsageError(f"{self.prog}: {message}; %agent help lists its options.")


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return value


def _batch_parser() -> _Parser:
    parser = _Parser(prog="%%agent_batch", add_help=False,
                     description="Start a batch: one background run per line of the cell; returns at once.")
    parser.add_argument("--from", dest="source", metavar="VARIABLE",
                        help="take the prompts from a list, dict or pandas Series in the notebook (empty cell body)")
    parser.add_argument("--agent", metavar="NAME", help="run with the Agent bound to NAME (its tools, instructions)")
    parser.add_argument("--model", help="model for every item")
    parser.add_argument("--instructions", help="system instructions for every item")
    parser.add_argument("--name", metavar="BATCH_NAME", help="the batch's name: the same name re-attaches to it")
    parser.add_argument("--concurrency", type=_whole, metavar="N",
                        help="runs in flight at most (default 64; a re-attach by name: the batch's own)")
    parser.add_argument("--mode", choices=MODES, help="follow the runs by polling or streaming (default: poll)")
    parser.add_argument("--max-attempts", type=_whole, metavar="N", help="attempts per item at most (default: 3)")
    parser.add_argument("--rpm", type=_positive, metavar="N", help="requests per minute at most")
    parser.add_argument("--tpm", type=_positive, metavar="N", help="estimated tokens per minute at most")
    parser.add_argument("--max-output-tokens", type=_whole, metavar="N", help="cap each reply's length")
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE", help="request metadata")
    parser.add_argument("-o", "--out", metavar="NAME", help="bind the Batch to this variable")
    parser.add_argument("--wait", action="store_true", help="block until every item has ended (executed notebooks)")
    return parser


def cell_batch_name(inputs: Any, spec: BatchSpec) -> str:
    """The name of a cell's batch: ``cell-`` and a hash of its inputs and of how each is asked (see the module)."""
    spec_fields = spec.to_dict()
    identity = {"inputs": normalise_inputs(inputs), **{key: spec_fields.get(key) for key in _NAMED_BY}}
    canonical = json.dumps(identity, sort_keys=True, ensure_ascii=False, default=str)
    return "cell-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


@magics_class
class BatchMagics(Magics):  # type: ignore[misc]
    """The ``%%agent_batch`` magic. Its agent, model and instructions default to ``AgentMagics``' settings, and
    ``%config AgentMagics.wait_by_default = True`` makes it wait too."""

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.batches: dict[str, Batch] = {}  # the batches started or re-attached in this kernel, by name

    @line_cell_magic("agent_batch")  # type: ignore[misc,arg-type]
    def agent_batch(self, line: str, cell: str | None = None) -> None:
        """``%%agent_batch [options]``: one background run per line of the cell; ``%agent_batch --from VARIABLE``:
        one per item of VARIABLE (``%agent help`` lists the options)."""
        try:
            self._start(line, cell)
        except AgentNBError as exc:
            raise UsageError(str(exc)) from None

    @property
    def agent_magics(self) -> Any:
        """The ``%%agent`` magics, whose agent and defaults a batch uses."""
        magics = self.shell.magics_manager.registry.get("AgentMagics") if self.shell is not None else None
        if magics is None:
            raise UsageError("%%agent_batch needs the agent_nb extension: run %load_ext agent_nb first.")
        return magics

    def _start(self, line: str, cell: str | None) -> None:
        args = _batch_parser().parse_args(split_words(line, "%%agent_batch"))
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"-o {args.out}: a variable name is letters, digits and underscores, not {args.out!r}.")
        magics = self.agent_magics
        if args.source is None and not (cell or "").strip() and args.name is not None:
            return self._reattach(args, magics)
        inputs = self._inputs(args.source, cell)
        agent: Agent = magics._named_agent(args.agent) if args.agent else magics.agent()
        options: dict[str, Any] = {"model": args.model or (agent.model if args.agent else magics.model)}
        instructions = args.instructions if args.instructions is not None else \
            (agent.instructions if args.agent else magics.instructions)
        if instructions:
            options["instructions"] = instructions
        if args.max_output_tokens:
            options["max_output_tokens"] = args.max_output_tokens
        if args.metadata:
            options["metadata"] = dict(_key_value(item) for item in args.metadata)
        mode, attempts = args.mode or "poll", args.max_attempts or 3
        spec = BatchSpec.of(agent, options, mode=mode, max_attempts=attempts)
        name = args.name or cell_batch_name(inputs, spec)
        stored = agent.store is not None and agent.store.ledger().get(name) is not None
        opened = Batch.open(agent, inputs, name=name, concurrency=args.concurrency or 64, mode=mode,
                            max_attempts=attempts, rate_limit=_rate(args), options=options, start=False)
        live = self.batches.get(name)
        if live is not None and live.working:  # its engine takes up any new items by itself
            batch, note = live, ("This batch is already working in this kernel: showing it again (any new prompts "
                                 "join it).")
        else:
            batch = self.batches[name] = opened
            batch.start()
            note = (f"Re-attached to the stored batch {name}: items that had ended are kept, and only the rest are "
                    "sent." if stored else "")
        self._show(batch, note, args, magics)

    def _reattach(self, args: argparse.Namespace, magics: Any) -> None:
        """``%agent_batch --name NAME`` with no prompts: work the stored batch NAME again, as it was started."""
        given = [flag for flag, value in (("--model", args.model), ("--instructions", args.instructions),
                                          ("--mode", args.mode), ("--max-attempts", args.max_attempts),
                                          ("--max-output-tokens", args.max_output_tokens),
                                          ("--metadata", args.metadata)) if value]
        store = magics.store
        info = store.ledger().get(args.name)
        if info is None:
            raise UsageError(f"%%agent_batch needs prompts: there is no stored batch {args.name!r} to re-attach to "
                             "(%agent batches lists them). Put one prompt per line in the cell body, or use --from "
                             "VARIABLE.")
        if given:
            raise UsageError(f"{', '.join(given)} only apply to new prompts: re-attaching to {args.name!r} keeps the "
                             "options it was started with. Drop them, or give the prompts too.")
        live = self.batches.get(args.name)
        if live is not None and live.working:
            self._show(live, "This batch is already working in this kernel: showing it again.", args, magics)
            return
        agent: Agent | None = magics._named_agent(args.agent) if args.agent else magics.agent()
        if args.agent is None and agent is not None and agent.client.base_url != info.spec.get("endpoint"):
            agent = None  # an agent at the endpoint the batch was started on
        batch = self.batches[args.name] = Batch.resume(args.name, agent=agent, store=store,
                                                      concurrency=args.concurrency, rate_limit=_rate(args))
        open_items = info.unfinished
        self._show(batch, f"Re-attached to the stored batch {args.name}: {open_items} unfinished item"
                          f"{'s' if open_items != 1 else ''} to follow or send; items that had ended are kept.",
                   args, magics)

    def _show(self, batch: Batch, note: str, args: argparse.Namespace, magics: Any) -> None:
        if args.out and self.shell is not None:
            self.shell.user_ns[args.out] = batch
        widget = BatchWidget.for_batch(batch)
        widget.show_note(note)
        widget.show_in(display(widget, display_id=True))  # type: ignore[no-untyped-call]
        if args.wait or magics.wait_by_default:
            batch.wait(progress=False)
            widget.refresh()

    def _inputs(self, source: str | None, cell: str | None) -> Any:
        """The batch's inputs: the cell's non-empty lines, or the notebook's variable ``source``."""
        if source is None:
            prompts = [line.strip() for line in (cell or "").splitlines() if line.strip()]
            if not prompts:
                raise UsageError("%%agent_batch needs prompts: one per line in the cell body, or take them from a "
                                 "variable with %agent_batch --from VARIABLE.")
            return prompts
        if cell is not None and cell.strip():
            raise UsageError(f"--from {source} takes the prompts from {source}, so the cell body must be blank; use "
                             f"the line magic %agent_batch --from {source}, or drop --from to ask the body's lines.")
        namespace = self.shell.user_ns if self.shell is not None else {}
        if source not in namespace:
            raise UsageError(f"--from {source}: nothing is called {source!r} in this notebook; define it first, e.g. "
                             f'{source} = ["first prompt", "second prompt"].')
        value = namespace[source]
        kind = type(value).__name__
        pandas = type(value).__module__.partition(".")[0] == "pandas" and kind in ("Series", "DataFrame")
        if not (isinstance(value, (list, tuple, dict)) or pandas):
            raise UsageError(f"--from {source}: {source!r} is a {kind}, not a list, dict or pandas Series of prompts.")
        if len(value) == 0:
            raise UsageError(f"--from {source}: {source!r} is empty, so there is nothing to ask.")
        return value


def _rate(args: argparse.Namespace) -> RateLimit | None:
    return RateLimit(args.rpm, args.tpm) if args.rpm or args.tpm else None
