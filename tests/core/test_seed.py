"""The seed article's Python snippets run verbatim, apart from their import line."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import gc
import io
import textwrap
from typing import Any

import httpx
import pytest

from mock_server import MockServer

SEED_POLLING = '''
import asyncio
from agent_nb import OpenAIResponsesClient

agent = OpenAIResponsesClient(model_id="o3").as_agent(
    name="researcher",
    instructions="You are a helpful research assistant.",
)

session = await agent.create_session()

# 发起后台任务
response = await agent.run(
    messages="Write a detailed market analysis for the Q4 product launch.",
    session=session,
    options={"background": True},
)

# 轮询直到完成
while response.continuation_token is not None:
    await asyncio.sleep(2)
    response = await agent.run(
        session=session,
        options={"continuation_token": response.continuation_token},
    )

print(response.text)
'''

SEED_STREAMING = '''
session = await agent.create_session()

last_token = None

# 开始流式传输,启用后台模式
async for update in agent.run(
    messages="Write a detailed market analysis for the Q4 product launch.",
    stream=True,
    session=session,
    options={"background": True},
):
    last_token = update.continuation_token
    if update.text:
        print(update.text, end="", flush=True)

    # 模拟网络中断
    break

# 使用保存的 token 恢复流式传输
if last_token is not None:
    async for update in agent.run(
        stream=True,
        session=session,
        options={"continuation_token": last_token},
    ):
        if update.text:
            print(update.text, end="", flush=True)
'''


async def run_cell(source: str, namespace: dict[str, Any]) -> str:
    """Run notebook-style code (top-level await) and return what it printed."""
    code = compile(textwrap.dedent(source), "<seed>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            await result
    return out.getvalue()


async def wait_for_background_tasks(timeout: float = 5.0) -> None:
    """Wait until the only task left on the loop is the caller (pending async-generator closes have run)."""
    me = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + timeout
    while others := {task for task in asyncio.all_tasks() if task is not me}:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"tasks still running: {others}")
        await asyncio.sleep(0.01)


@pytest.fixture
def seed_env(mock: MockServer, monkeypatch: pytest.MonkeyPatch) -> MockServer:
    monkeypatch.setenv("OPENAI_BASE_URL", mock.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-seed-test")
    mock.set_faults("")
    return mock


def stored_text(mock: MockServer, response_id: str) -> str:
    body = httpx.get(f"{mock.url}/responses/{response_id}", timeout=10).json()
    return "".join(c["text"] for item in body["output"] for c in item["content"])


async def test_seed_polling_snippet_runs_verbatim(seed_env: MockServer, monkeypatch: pytest.MonkeyPatch) -> None:
    real_sleep = asyncio.sleep
    monkeypatch.setattr(asyncio, "sleep", lambda seconds, *a: real_sleep(min(seconds, 0.05), *a))
    namespace: dict[str, Any] = {}
    printed = await run_cell(SEED_POLLING, namespace)
    response = namespace["response"]
    assert response.status == "completed" and response.continuation_token is None
    assert printed == stored_text(seed_env, response.response_id) + "\n"
    assert len(printed) > 100
    await namespace["agent"].client.aclose()


async def test_seed_streaming_snippet_resumes_exactly(seed_env: MockServer, recwarn: pytest.WarningsRecorder) -> None:
    namespace: dict[str, Any] = {}
    await run_cell(SEED_POLLING.split("session = await")[0], namespace)  # the seed's agent
    printed = await run_cell(SEED_STREAMING, namespace)
    token = namespace["last_token"]
    assert token is not None and token.sequence_number == 0
    assert printed == stored_text(seed_env, token.response_id)
    gc.collect()
    await wait_for_background_tasks()  # the abandoned stream is closed by the loop's async-generator finaliser
    await namespace["agent"].client.aclose()  # as a kernel shutting down would
    assert [str(w.message) for w in recwarn.list] == []  # breaking out of the stream warns about nothing
