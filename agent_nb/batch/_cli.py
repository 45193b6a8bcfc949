"""``agent_nb batch worker|list``: work a stored batch without a notebook, on any machine that reaches its store.

Several workers (with ``--redis``, on several machines) work one batch together; a worker that dies has its items
taken over by the others when its lease runs out. The endpoint is the one the batch was created for, with the key
the environment has for it (``OPENAI_API_KEY`` …), never one from the store.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TextIO

from .._errors import AgentNBError
from .._store import RedisRunStore, RunStore, SQLiteRunStore, default_store
from ._batch import DEFAULT_LEASE, Batch
from ._progress import BatchProgress

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent_nb", description="agent-nb from the command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    batch = commands.add_parser("batch", help="work or list stored batches")
    actions = batch.add_subparsers(dest="action", required=True)
    worker = actions.add_parser("worker", help="work a stored batch until every item has ended")
    listing = actions.add_parser("list", help="list the stored batches with their counts")
    for sub in (worker, listing):
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--redis", metavar="URL", help="the Redis run store (default: the SQLite one)")
        where.add_argument("--store", metavar="PATH", help="a SQLite run store file")
        sub.add_argument("--prefix", default="agent_nb", help="the Redis store's key prefix (default agent_nb)")
    worker.add_argument("--name", required=True, help="the batch to work")
    worker.add_argument("--concurrency", type=int, help="runs in flight at most (default: the batch's own)")
    worker.add_argument("--lease", type=float, default=DEFAULT_LEASE,
                        help=f"seconds before a silent worker's items are taken over (default {DEFAULT_LEASE:g})")
    worker.add_argument("--quiet", action="store_true", help="print only the final line")
    return parser


def _store(args: argparse.Namespace) -> RunStore:
    if args.redis:
        return RedisRunStore(args.redis, prefix=args.prefix)
    return SQLiteRunStore(args.store) if args.store else default_store()


def _work(args: argparse.Namespace, store: RunStore, out: TextIO) -> int:
    if args.concurrency is not None and args.concurrency < 1:
        raise AgentNBError(f"--concurrency must be at least 1, not {args.concurrency}.")
    batch = Batch.resume(args.name, store=store, concurrency=args.concurrency, lease=args.lease, start=False)
    last = [""]

    def show(progress: BatchProgress) -> None:
        line = progress.summary().rsplit(" · ", 1)[0]  # without the elapsed time, so that a line means a change
        if line != last[0] and not args.quiet:
            last[0] = line
            out.write(f"{progress.name}: {progress.summary()}\n")
            out.flush()

    batch.on_progress(show)

    def stop(signum: int, frame: FrameType | None) -> None:
        batch.stop(timeout=0)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        batch.start()
        try:
            batch.wait(progress=False)
        except KeyboardInterrupt:
            batch.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    final = batch.progress
    out.write(f"{final.name}: {final.summary()}\n")
    return 0 if final.state in ("completed", "cancelled") else 1


def _list(store: RunStore, out: TextIO) -> int:
    batches = Batch.stored(store)
    if not batches:
        out.write(f"No batches in {store}.\n")
    for info in batches:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(info.counts.items())) or "no items"
        out.write(f"{info.name}\t{info.state}\t{info.total} items: {counts}\n")
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """The console script; returns the exit status (2 for a mistake, said in one sentence)."""
    args = _parser().parse_args(argv)
    stream = out or sys.stdout
    try:
        with _store(args) as store:
            if args.action == "list":
                return _list(store, stream)
            return _work(args, store, stream)
    except AgentNBError as exc:
        sys.stderr.write(f"agent_nb: {exc}\n")
        return 2
