"""The SSE decoder: any chunking, CRLF, comments, multi-line data, multi-byte characters cut anywhere."""

from __future__ import annotations

import json
import random

import pytest

from agent_nb._sse import SSEDecoder

EVENTS = [{"type": "response.output_text.delta", "sequence_number": i, "delta": "中文🚀e\u0301👩\u200d💻"[: i % 9]}
          for i in range(300)]


def encode(events: list[dict[str, object]], newline: bytes = b"\n") -> bytes:
    frames = [b"event: " + str(e["type"]).encode() + newline + b"data: " + json.dumps(e, ensure_ascii=False).encode()
              + newline + newline for e in events]
    return b"".join(frames)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_any_chunking_gives_the_same_events(newline: bytes) -> None:
    raw = encode(EVENTS, newline)
    rng = random.Random(7)
    for _ in range(100):
        decoder, out, i = SSEDecoder(), [], 0
        while i < len(raw):
            n = rng.randint(1, 50)
            out += decoder.feed(raw[i:i + n])
            i += n
        assert out == EVENTS and decoder.pending == 0


def test_one_byte_at_a_time() -> None:
    raw = encode(EVENTS[:40])
    decoder = SSEDecoder()
    out = [event for i in range(len(raw)) for event in decoder.feed(raw[i:i + 1])]
    assert out == EVENTS[:40]


def test_comments_keepalives_and_multiline_data() -> None:
    raw = b": keep-alive\n\nevent: x\ndata: {\"a\":\ndata: 1}\n\nid: 3\ndata:{\"b\":2}\n\nevent: only\n\n"
    assert SSEDecoder().feed(raw) == [{"a": 1}, {"b": 2}]


def test_an_incomplete_event_waits_for_the_rest() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a": "\xe4\xb8') == []
    assert decoder.pending > 0
    assert decoder.feed(b'\xad"}\n\n') == [{"a": "中"}]


def test_malformed_json_raises_a_value_error_with_the_position() -> None:
    with pytest.raises(ValueError, match="line 1 column"):
        SSEDecoder().feed(b'data: {"a": tru}\n\n')
