"""A process that starts or resumes a run with function tools, printing what happens, to be killed at any point.

Usage: ``python -m tests.core.tool_worker BASE_URL STORE_PATH LOG_PATH start|RUN_ID``. Each tool call appends
``ran CALL_ID`` to LOG_PATH when it finishes; the process prints ``RUN run_id`` once the run is recorded, ``DONE
CALL_ID`` once a call's output is recorded in the store, one ``UPDATE`` line per update, and ``END text`` at the
end (``LOST`` if an earlier process was killed while submitting outputs).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from agent_nb import Agent, BackgroundRun, ResponsesClient, RetryPolicy, SQLiteRunStore, ToolOutputsUnknown, tool

SCRIPT = [{"call": "lookup", "arguments": {"key": "a"}}, {"call": "lookup", "arguments": {"key": "b"}},
          {"reasoning": "Now the second round."}, {"call": "lookup", "arguments": {"key": "c"}},
          {"answer": "last={output}, done."}]
OPTIONS = {"background": True, "metadata": {"mock_options": "tokens=40,tps=60,ttft=0,queue_delay=0,tool_time=0",
                                            "mock_agent": json.dumps(SCRIPT)}}


def main(url: str, store_path: str, log_path: str, target: str) -> None:
    log = Path(log_path)

    @tool
    def lookup(key: str) -> str:
        time.sleep(0.15)  # long enough for a kill to land inside a call
        with log.open("a") as f:
            f.write(f"ran {key}\n")
        return f"value of {key}"

    async def go() -> None:
        client = ResponsesClient(url, "sk-test", retry=RetryPolicy(initial_delay=0.01, max_delay=0.05))
        agent = Agent(client, model="o3", store=SQLiteRunStore(store_path), tools=[lookup])
        run = agent.start("Look things up", options=OPTIONS, launch=False) if target == "start" else \
            agent.resume(target)
        print("RUN", run.run_id, flush=True)

        def watch(r: BackgroundRun, change: str) -> None:
            if change == "tools" and r.tool_loop is not None:
                for call in r.tool_loop.chain.calls:
                    if call["output"] is not None:
                        print("DONE", json.loads(call["arguments"])["key"], flush=True)

        run.add_observer(watch)
        try:
            async for _ in run.updates():
                print("UPDATE", flush=True)
        except ToolOutputsUnknown:  # killed while submitting: the run is lost rather than submitted twice
            print("LOST", flush=True)
        else:
            print("END", run.text, flush=True)
        await client.aclose()

    asyncio.run(go())


if __name__ == "__main__":
    main(*sys.argv[1:5])
