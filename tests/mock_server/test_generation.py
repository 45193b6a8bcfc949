"""Deterministic output: text, multi-byte text, scripted replies, and the in-process server API."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import httpx
import openai
import pytest

import mock_server
from mock_server import GenerationOptions, ReplyScript, ServerConfig
from mock_server.errors import APIError
from mock_server.faults import FaultSpec
from mock_server.generation import plan_reply

from ..conftest import FAST
from .test_background import collect


def test_same_conversation_and_seed_give_the_same_deltas() -> None:
    options = GenerationOptions(tokens=50)
    assert plan_reply(options, ["user: hi"], None) == plan_reply(options, ["user: hi"], None)
    assert plan_reply(options, ["user: hi"], None) != plan_reply(GenerationOptions(tokens=50, seed=1),
                                                                 ["user: hi"], None)
    assert len(plan_reply(options, ["user: hi"], None)) == 50


def test_text_mode_starts_from_the_prompt() -> None:
    text = "".join(plan_reply(GenerationOptions(tokens=30), ["user: Quarterly launch plan"], None))
    assert text.startswith("## Notes on Quarterly launch plan\n\n")


def test_multibyte_mode_has_cjk_astral_emoji_and_combining_marks() -> None:
    text = "".join(plan_reply(GenerationOptions(tokens=400, mode="multibyte"), ["user: x"], None))
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)
    assert any(ord(ch) > 0xFFFF for ch in text)
    assert any(unicodedata.combining(ch) for ch in text)
    assert "\u200d" in text  # zero-width joiner sequences


def test_scripted_replies_split_into_deltas_that_rejoin_exactly() -> None:
    reply = "Line one.\n\n  - item\ttab  end "
    deltas = plan_reply(GenerationOptions(), ["user: x"], reply)
    assert "".join(deltas) == reply and len(deltas) > 3


def test_reply_script_file_matches_prompts(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps([{"prompt": "Hello", "reply": "Hi there."},
                                {"contains": "weather", "reply": "Sunny."},
                                {"prompt": "*", "reply": "I only know greetings."}]))
    script = ReplyScript.load(path)
    assert script.reply_for("  Hello ") == "Hi there."
    assert script.reply_for("what is the weather like") == "Sunny."
    assert script.reply_for("other") == "I only know greetings."
    with mock_server.serve(options=FAST, script=script) as url, openai.OpenAI(base_url=url, api_key="k") as sdk:
        text, _, final = collect(sdk.responses.create(model="o3", input="Hello", background=True, stream=True))
        assert text == "Hi there." and final is not None and final.output_text == "Hi there."


def test_bad_script_files_are_rejected_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"prompt": "no reply"}]))
    with pytest.raises(ValueError, match="needs 'reply'"):
        ReplyScript.load(path)


def test_options_and_faults_parse_and_reject_unknown_keys() -> None:
    options = GenerationOptions.parse("tokens=7 tps=2.5;mode=multibyte,timestamps=1")
    assert (options.tokens, options.tps, options.mode, options.timestamps) == (7, 2.5, "multibyte", True)
    spec = FaultSpec.parse("drop_after=3, drops=2 expired ttft=0.5")
    assert (spec.drop_after, spec.drops, spec.expire_stream, spec.slow_first_token) == (3, 2, True, 0.5)
    assert str(FaultSpec.parse(str(spec))) == str(spec)
    for bad in ("tokens", "tokens=x", "colour=red"):
        with pytest.raises(APIError):
            GenerationOptions.parse(bad)
    for bad in ("drop_after", "split=0", "drop_after=-1", "expire_stream=maybe"):
        with pytest.raises(APIError):
            FaultSpec.parse(bad)


def test_serve_gives_a_base_url_and_stops_on_exit() -> None:
    with mock_server.serve(options=FAST) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert httpx.get(url + "/models", timeout=5).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/models", timeout=5)


def test_mock_server_object_reports_its_state() -> None:
    server = mock_server.MockServer(ServerConfig(options=FAST))
    assert "stopped" in repr(server)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    with server:
        assert server.running and server.url in repr(server)
    assert not server.running
