"""``python -m mock_server``: run the mock Responses server until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

from .config import ServerConfig
from .errors import APIError
from .faults import FAULT_KEYS, RATE_KEYS, FaultSpec, describe_faults
from .generation import MODES, GenerationOptions, ReplyScript
from .keys import KeySet
from .limits import Limits
from .persistence import PersistenceError
from .ratelimit import MAX_BUDGET
from .replay import ReplayLibrary, load_recordings
from .server import PortUnavailable, bind
from .webhooks import WebhookFaults

_CONTROL = """control endpoints (not rate limited):
  GET /mock/health                  status, responses held, creates accepted since start
  GET|PUT|DELETE /mock/faults       server-wide faults: {"faults": "drop_rate=0.1,http_429_rate=0.05"}
  GET|PUT|DELETE /mock/options      default generation options: {"options": "tokens=40,tps=0"}
  GET|PUT /mock/webhooks            webhook targets {"urls", "secret", "faults"} and the deliveries made
  GET|PUT|DELETE /mock/rate_limits  {"requests_per_minute": N, "tokens_per_minute": N} per key (null: unlimited);
                                    GET shows each key's remaining budget by fingerprint, never the key"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mock_server",
        description="A local OpenAI-compatible Responses server with background mode, resumable streams and "
                    "fault injection.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="faults (for --faults, metadata {\"mock_faults\": ...}, the X-Mock-Faults header, PUT /mock/faults):\n"
               + describe_faults() + "\n\n" + _CONTROL,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind, 0 for a free one (default 8765)")
    parser.add_argument("--db", type=Path, help="SQLite file that keeps responses across restarts")
    parser.add_argument("--api-key", action="append", metavar="KEY",
                        help="require this bearer key; repeat for several, or 're:PATTERN' for a pattern (tokens that "
                             "rotate) (default: $MOCK_SERVER_API_KEY, else none)")
    parser.add_argument("--webhook-url", action="append", metavar="URL",
                        help="POST a signed event here when a background response ends (repeatable)")
    parser.add_argument("--webhook-secret", metavar="whsec_...", help="the secret webhooks are signed with")
    parser.add_argument("--webhook-faults", metavar="SPEC", default="",
                        help="webhook faults: delay=S, drop=N, duplicate, reorder=S, bad_signature")
    parser.add_argument("--replay", type=Path, metavar="FILE|DIR",
                        help="serve recorded runs (agent-nb's options={'record': ...}) instead of generated ones")
    parser.add_argument("--replay-speed", type=float, default=1.0, metavar="X",
                        help="play recordings X times faster (0: as fast as possible; default 1)")
    parser.add_argument("--script", type=Path, help="JSON file mapping prompts to exact replies or agent trajectories")
    parser.add_argument("--poll-retention", type=float, default=600.0,
                        help="seconds a finished response stays retrievable (default 600)")
    parser.add_argument("--stream-retention", type=float, default=300.0,
                        help="seconds a finished response stays streamable (default 300)")
    parser.add_argument("--state-file", type=Path,
                        help="once listening, write {url, pid, db} here as JSON (removed again on a clean stop), so "
                             "that a supervisor knows where the server is")
    limits = parser.add_argument_group("limits (bad or huge input gets a 4xx naming the limit)")
    caps = Limits()
    limits.add_argument("--max-body-bytes", type=int, default=caps.max_body_bytes,
                        help=f"largest request body accepted (default {caps.max_body_bytes:,})")
    limits.add_argument("--max-json-depth", type=int, default=caps.max_depth,
                        help=f"deepest JSON nesting accepted (default {caps.max_depth})")
    limits.add_argument("--max-tokens", type=int, default=caps.max_tokens,
                        help=f"most text deltas one reply may have (default {caps.max_tokens:,})")
    rates = parser.add_argument_group("rate limits per API key, as the service's (429 with Retry-After when spent)")
    rates.add_argument("--rate-limit-rpm", type=int, default=0, metavar="N",
                       help="requests per minute, refilled continuously (default 0: unlimited)")
    rates.add_argument("--rate-limit-tpm", type=int, default=0, metavar="N",
                       help="tokens per minute that creates may cost: input/4 plus max_output_tokens, else --tokens "
                            "(default 0: unlimited)")
    pace = parser.add_argument_group("output and pacing")
    defaults = GenerationOptions()
    pace.add_argument("--tokens", type=int, default=defaults.tokens, help="text deltas per reply")
    pace.add_argument("--tps", type=float, default=defaults.tps, help="deltas per second, 0 = unpaced")
    pace.add_argument("--ttft", type=float, default=defaults.ttft, help="seconds to the first delta")
    pace.add_argument("--queue-delay", type=float, default=defaults.queue_delay,
                      help="seconds a background response stays queued")
    pace.add_argument("--mode", choices=MODES, default=defaults.mode, help="kind of text generated")
    pace.add_argument("--seed", type=int, default=defaults.seed, help="seed of the generated text")
    faults = parser.add_argument_group("faults (server-wide)")
    faults.add_argument("--faults", default="", metavar="SPEC", help="a fault spec such as 'drop_after=40,drops=2'")
    for key, (kind, help_text) in FAULT_KEYS.items():
        flag = "--" + key.replace("_", "-")
        if kind is bool:
            faults.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            faults.add_argument(flag, type=kind, default=None, metavar="P" if key in RATE_KEYS else "N",
                                help=help_text)
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    spec = FaultSpec.parse(args.faults, param="--faults")
    given = [key for key in FAULT_KEYS if getattr(args, key) is not None]
    if given:  # checked as a spec is, then laid over --faults
        flags = FaultSpec.parse(",".join(key if getattr(args, key) is True else f"{key}={getattr(args, key)}"
                                         for key in given), param="the fault flags")
        spec = dataclasses.replace(spec, **{key: getattr(flags, key) for key in given})
    options = GenerationOptions.parse(f"tokens={args.tokens},tps={args.tps},ttft={args.ttft},"
                                      f"queue_delay={args.queue_delay},mode={args.mode},seed={args.seed}",
                                      param="the pacing flags")
    for name in ("max_body_bytes", "max_json_depth", "max_tokens"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1.")
    for name in ("rate_limit_rpm", "rate_limit_tpm"):
        if not 0 <= getattr(args, name) <= MAX_BUDGET:
            raise ValueError(f"--{name.replace('_', '-')} must be between 0 (unlimited) and {MAX_BUDGET:,}.")
    limits = Limits(max_body_bytes=args.max_body_bytes, max_depth=args.max_json_depth, max_tokens=args.max_tokens)
    if options.tokens > limits.max_tokens:
        raise ValueError(f"--tokens {options.tokens} is more than --max-tokens {limits.max_tokens}.")
    KeySet(args.api_key or ())  # a pattern that does not compile is one sentence here, not a traceback later
    WebhookFaults.parse(args.webhook_faults, param="--webhook-faults")
    return ServerConfig(
        options=options,
        faults=spec,
        script=ReplyScript.load(args.script) if args.script else None,
        db=args.db,
        api_key=None if args.api_key else os.environ.get("MOCK_SERVER_API_KEY") or None,
        api_keys=tuple(args.api_key or ()),
        webhook_urls=tuple(args.webhook_url or ()),
        webhook_secret=args.webhook_secret,
        webhook_faults=args.webhook_faults,
        replay=ReplayLibrary(load_recordings(args.replay), args.replay_speed) if args.replay else None,
        poll_retention=args.poll_retention,
        stream_retention=args.stream_retention,
        limits=limits,
        rate_limit_rpm=args.rate_limit_rpm or None,
        rate_limit_tpm=args.rate_limit_tpm or None,
    )


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM. A mistake in the arguments, a busy port or an unusable ``--db`` file is one
    sentence on stderr and exit status 2, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        sock = bind(args.host, args.port)
    except (APIError, ValueError, OSError, PortUnavailable) as exc:
        print(f"mock_server: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from .app import create_app

    try:
        app = create_app(config)  # opens (and reads) the --db file, so that a damaged one is reported here
    except PersistenceError as exc:
        sock.close()
        print(f"mock_server: {exc}", file=sys.stderr)
        return 2
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    host = f"[{args.host}]" if ":" in args.host else args.host
    port = sock.getsockname()[1]

    async def serve() -> None:
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            url = f"http://{host}:{port}/v1"
            if args.state_file is not None:
                write_state(args.state_file, {"url": url, "pid": os.getpid(), "db": str(config.db or ""),
                                              "started_at": time.time()})
            where = f" (responses kept in {config.db})" if config.db else ""
            print(f"Mock Responses server on {url}{where}. Press Ctrl-C to stop.", flush=True)
        await task

    # uvicorn shuts down gracefully on SIGTERM, then raises it again for the handler it found: make that an exit, so
    # the state file is removed and the status is 0, as on Ctrl-C.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
    finally:
        sock.close()
        if args.state_file is not None:
            remove_state(args.state_file)
    return 0 if server.started else 1


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def write_state(path: Path, state: dict[str, object]) -> None:
    """Write the state file atomically (readers never see half of it), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(state, file)
    os.replace(partial, path)


def remove_state(path: Path) -> None:
    """Remove the state file if it still describes this process (a newer server may have replaced it)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


if __name__ == "__main__":
    sys.exit(main())
