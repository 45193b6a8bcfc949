"""A process that starts a background run, records it, and streams until it is killed.

Usage: ``python -m tests.core.resume_worker BASE_URL API_KEY sqlite|redis LOCATION PREFIX``. It prints the run id
once the run is recorded, then keeps streaming; the test kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys

from agent_nb import Agent, RedisRunStore, ResponsesClient, SQLiteRunStore


async def main(url: str, key: str, kind: str, location: str, prefix: str) -> None:
    store = SQLiteRunStore(location) if kind == "sqlite" else RedisRunStore(location, prefix=prefix)
    agent = Agent(ResponsesClient(url, key), model="o3", store=store)
    run = agent.start("Survive a kernel restart", launch=False, options={
        "metadata": {"mock_options": "tokens=400,tps=80,ttft=0,queue_delay=0"}, "name": "worker"})
    announced = False
    async for _ in run.updates():
        if not announced and run.run_id and run.text:
            print(run.run_id, flush=True)
            announced = True


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
