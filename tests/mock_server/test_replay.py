"""Recorded runs replayed offline: agent-nb records what a run receives, the mock serves it back, and a replay broken
and resumed at every event gives the recorded events exactly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from agent_nb import Agent, ResponsesClient
from mock_server import MockServer, ServerConfig
from mock_server.replay import ReplayLibrary, load_recordings

from ..conftest import FAST
from ..helpers import ROOT, ServerProcess

EXAMPLE = ROOT / "mock_server" / "recordings" / "deep_research.jsonl"
KEY = "sk-recording-secret-123"


def record_run(mock: MockServer, path: Path, prompt: str, **options: Any) -> str:
    import asyncio

    async def go() -> str:
        client = ResponsesClient(mock.url, KEY)
        agent = Agent(client, model=options.pop("model", "o3"), store=False)
        response = await agent.start(prompt, options={"record": str(path), **options}).wait()
        await client.aclose()
        return str(response.response_id)

    return asyncio.run(go())


def events_of(http: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    with http.stream("GET", path, params={"stream": "true", **params}) as answer:
        return [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: ")]


def without_ids(events: list[dict[str, Any]], response_id: str) -> list[str]:
    return [json.dumps(e, sort_keys=True).replace(response_id, "RESPONSE") for e in events]


@pytest.fixture
def keyed_mock() -> Iterator[MockServer]:
    with MockServer(ServerConfig(options=FAST, api_key=KEY)) as server:
        yield server


def test_a_recorded_run_replays_identically_broken_and_resumed_at_every_event(keyed_mock: MockServer,
                                                                              tmp_path: Path) -> None:
    path = tmp_path / "research.jsonl"
    original = record_run(keyed_mock, path, "Compare Q4 launch prices", model="o3-deep-research",
                          tools=[{"type": "web_search_preview"}],
                          metadata={"mock_options": "tokens=30,tps=0,ttft=0,queue_delay=0,tool_time=0"})
    text = path.read_text()
    assert KEY not in text and "authorization" not in text.lower()  # the key is never written
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["kind"] == "request" and lines[0]["body"]["model"] == "o3-deep-research"
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=keyed_mock.base_url, timeout=10, headers=headers) as http:
        recorded = events_of(http, f"/v1/responses/{original}")
    assert [line["event"] for line in lines[1:]] == recorded  # every event, once, as it came

    with MockServer(ServerConfig(options=FAST, replay=ReplayLibrary(load_recordings(path), speed=0))) as replayer, \
            httpx.Client(base_url=replayer.base_url, timeout=10) as http:
        created = http.post("/v1/responses", json={"model": "o3-deep-research", "input": "Compare Q4 launch prices",
                                                   "background": True}).json()
        replayed = events_of(http, f"/v1/responses/{created['id']}")
        assert without_ids(replayed, created["id"]) == without_ids(recorded, original)
        for after in range(len(replayed) - 1):
            rest = events_of(http, f"/v1/responses/{created['id']}", starting_after=after)
            assert replayed[:after + 1] + rest == replayed, f"resumed after event {after}"
        final = http.get(f"/v1/responses/{created['id']}").json()
        assert final["status"] == "completed" and final["id"] == created["id"]
        assert [i["type"] for i in final["output"]].count("web_search_call") == 12


def test_recordings_are_matched_by_request_then_served_in_order(mock: MockServer, tmp_path: Path) -> None:
    for prompt, reply in (("First question", "Answer one."), ("Second question", "Answer two.")):
        record_run(mock, tmp_path / f"{prompt[:5]}.jsonl", prompt, metadata={"mock_reply": reply})
    library = ReplayLibrary(load_recordings(tmp_path), speed=0)
    with MockServer(ServerConfig(options=FAST, replay=library)) as replayer, \
            openai.OpenAI(base_url=replayer.url, api_key="k", _strict_response_validation=True) as sdk:
        def reply(prompt: str) -> str:
            return "".join(e.delta for e in sdk.responses.create(model="o3", input=prompt, stream=True,
                                                                  background=True)
                           if e.type == "response.output_text.delta")

        assert reply("Second question") == "Answer two."
        assert reply("First question") == "Answer one."
        assert {reply("Something else"), reply("Anything")} == {"Answer one.", "Answer two."}


def test_the_shipped_example_replays_from_the_command_line() -> None:
    assert EXAMPLE.exists(), "the example recording ships with the mock server"
    with ServerProcess("--replay", str(EXAMPLE), "--replay-speed", "0") as server, \
            openai.OpenAI(base_url=server.url, api_key="k", _strict_response_validation=True) as sdk:
        stream = sdk.responses.create(model="o3-deep-research", input="anything", background=True, stream=True,
                                      tools=[{"type": "web_search_preview"}])
        events = list(stream)
        final = events[-1].response
        assert final.status == "completed" and final.output_text
        assert any(e.type == "response.web_search_call.searching" for e in events)
        assert any(e.type == "response.output_text.annotation.added" for e in events)


def test_a_damaged_recording_is_one_sentence(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "request", "body": {}}\nnot json\n')
    result = subprocess.run([sys.executable, "-m", "mock_server", "--replay", str(bad)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "line 2: not a recording line" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_stream_fault_applies_to_a_replay() -> None:
    library = ReplayLibrary(load_recordings(EXAMPLE), speed=0)
    with MockServer(ServerConfig(options=FAST, replay=library)) as replayer, \
            httpx.Client(base_url=replayer.base_url, timeout=10) as http:
        whole_id = http.post("/v1/responses", json={"model": "o3", "input": "x", "background": True}).json()["id"]
        whole = without_ids(events_of(http, f"/v1/responses/{whole_id}"), whole_id)
        created = http.post("/v1/responses", json={"model": "o3", "input": "x", "background": True, "metadata": {
            "mock_faults": "drop_after=15,split=5"}}).json()
        seen: list[dict[str, Any]] = []
        with pytest.raises(httpx.HTTPError), http.stream(
                "GET", f"/v1/responses/{created['id']}", params={"stream": "true"}) as answer:
            for line in answer.iter_lines():  # frames cut into 5-byte pieces, then the connection drops
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
        assert len(seen) == 15
        rest = events_of(http, f"/v1/responses/{created['id']}", starting_after=14)
        assert without_ids(seen + rest, created["id"]) == whole


def test_agent_nb_record_writes_one_private_file_per_run(mock: MockServer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    directory = tmp_path / "recordings"
    monkeypatch.setenv("AGENT_NB_RECORD", str(directory))

    async def go() -> str | None:
        client = ResponsesClient(mock.url, KEY)
        agent = Agent(client, model="o3")
        run = agent.start("Record me", options={"metadata": {"mock_options": "tokens=20,tps=0,ttft=0"}})
        await run.wait()
        await client.aclose()
        return run.run_id

    run_id = asyncio.run(go())
    (path,) = directory.glob("*.jsonl")
    assert path.name == f"{run_id}.jsonl" and path.stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700 and KEY not in path.read_text()
    assert len(load_recordings(path)[0].events) > 20
