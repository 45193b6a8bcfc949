"""A process working a batch whose run store is on a disk that the test fills up mid-batch, then frees.

Usage: ``python -m tests.batch.full_disk_batch_worker BASE_URL STORE_PATH ITEMS``. It starts the batch and prints
``working`` once some items are done (the test fills the disk), ``warned`` once the store has refused a write (the
test frees the disk), then waits for the batch's end and prints one JSON line: its progress, the StoreWarnings
issued, and each item's status, text and run id.

``python -m tests.batch.full_disk_batch_worker --read STORE_PATH`` prints the store's run records as one JSON line
(run id, status, response id, text). The test reads the store this way, from inside the small disk's namespace,
because SQLite resolves the ``/proc/PID/root`` link that leads there from outside and would open another file.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

from agent_nb import Agent, ResponsesClient, RetryPolicy, SQLiteRunStore, StoreWarning


def main(url: str, store_path: str, items: int) -> None:
    client = ResponsesClient(url, "sk-test", retry=RetryPolicy(initial_delay=0.01, max_delay=0.05))
    agent = Agent(client, model="o3", store=SQLiteRunStore(store_path))
    paced = {"metadata": {"mock_options": "tokens=60,tps=120,ttft=0,queue_delay=0"}}  # half a second a run
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = agent.batch([f"Summarise filing {i}" for i in range(items)], name="full", concurrency=10,
                            options=paced)
        said: list[str] = []  # what the progress said of the store while it refused writes
        batch.on_progress(lambda p: said.append(p.store_error) if p.store_error and not said else None)
        step = "working"
        deadline = time.monotonic() + 120
        while step != "waiting" and time.monotonic() < deadline:
            if step == "working" and batch.progress.done >= 10:
                print("working", flush=True)
                step = "warned"
            elif step == "warned" and any(issubclass(w.category, StoreWarning) for w in caught):
                print("warned", flush=True)
                step = "waiting"
            time.sleep(0.02)
        batch.wait(120, progress=False)
    print(json.dumps({
        "state": batch.progress.state, "done": batch.progress.done, "failed": batch.progress.failed,
        "store_error_shown": said[0] if said else None, "store_error_at_end": batch.progress.store_error,
        "warnings": [str(w.message) for w in caught if issubclass(w.category, StoreWarning)],
        "results": [{"key": r.key, "status": r.status, "text": r.text, "run_id": r.run_id, "attempts": r.attempts}
                    for r in batch.results()],
    }), flush=True)


def read(store_path: str) -> None:
    store = SQLiteRunStore(store_path)
    print(json.dumps([{"run_id": r.run_id, "status": r.status, "response_id": r.response_id, "text": r.text}
                      for r in store.list()]), flush=True)
    store.close()


if __name__ == "__main__":
    if sys.argv[1] == "--read":
        read(sys.argv[2])
    else:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
