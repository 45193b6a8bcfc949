"""A process that resumes a run from a token, as a user in a fresh kernel would, and prints every update's token.

Usage: ``python -m tests.core.hop_worker BASE_URL API_KEY STORE_PATH TOKEN COUNT``. It streams from ``TOKEN`` with
its own agent and store (the same SQLite file as the test's), prints the continuation token of each update, and
stops after ``COUNT`` updates (the test may kill it with SIGKILL before that).
"""

from __future__ import annotations

import asyncio
import sys

from agent_nb import Agent, ResponsesClient, RetryPolicy, SQLiteRunStore


async def main(url: str, key: str, store_path: str, token: str, count: int) -> None:
    client = ResponsesClient(url, key, retry=RetryPolicy(initial_delay=0.01, max_delay=0.05))
    agent = Agent(client, model="o3", store=SQLiteRunStore(store_path))
    seen = 0
    async for update in agent.run(stream=True, options={"continuation_token": token}):
        print(update.continuation_token or "END", flush=True)
        seen += 1
        if seen >= count:
            break
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5], int(sys.argv[5])))
