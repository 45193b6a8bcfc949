"""A process whose run store is on a disk that the test fills up mid-run.

Usage: ``python -m tests.core.full_disk_worker BASE_URL STORE_PATH``. It starts a paced run, prints ``streaming``
once text arrives (the test then fills the disk), follows the run to its end, and prints one JSON line: how the run
ended, its text and the server's, the store error it kept, and how many StoreWarnings were issued.
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings

import httpx

from agent_nb import Agent, ResponsesClient, RetryPolicy, SQLiteRunStore, StoreWarning


async def main(url: str, store_path: str) -> None:
    client = ResponsesClient(url, "sk-test", retry=RetryPolicy(initial_delay=0.01, max_delay=0.05))
    agent = Agent(client, model="o3", store=SQLiteRunStore(store_path))
    run = agent.start("Fill the disk", launch=False,
                      options={"metadata": {"mock_options": "tokens=4000,tps=800,ttft=0,queue_delay=0"}})
    announced, exception = False, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            async for _ in run.updates():
                if not announced and len(run.text) > 200:
                    print("streaming", flush=True)
                    announced = True
        except Exception as exc:
            exception = repr(exc)
    body = httpx.get(f"{url}/responses/{run.response_id}", timeout=10).json()
    print(json.dumps({
        "status": run.status, "text": run.text, "exception": exception,
        "server_text": "".join(c["text"] for item in body["output"] for c in item["content"]),
        "store_error": str(run.store_error) if run.store_error else None,
        "warnings": sum(issubclass(w.category, StoreWarning) for w in caught),
    }), flush=True)
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
