"""Deterministic model output: what the mock "model" says, in how many deltas, at what pace.

The reply is a pure function of the conversation, the seed and the options, so a run regenerated after a server
crash produces byte-identical events, and a test can predict the exact text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import APIError, bad_request
from .limits import MAX_SECONDS
from .trajectory import check_script

MODES = ("text", "multibyte", "scripted")
PROFILES = ("", "deep_research")


@dataclass(frozen=True)
class GenerationOptions:
    """How long the reply is, what it is made of, and how fast it arrives.

    ``tokens`` is the number of text deltas; ``tps`` the deltas per second (0 = as fast as possible); ``ttft`` the
    delay before the first delta; ``queue_delay`` how long a background response stays ``queued``.
    """

    tokens: int = 120
    tps: float = 60.0
    ttft: float = 0.3
    queue_delay: float = 0.1
    mode: str = "text"
    seed: int = 0
    timestamps: bool = False
    tool_time: float = 0.5  # seconds a hosted tool call (a search, a code cell) takes
    profile: str = ""  # "deep_research": reasoning, a dozen searches, a code cell and a cited report

    @classmethod
    def parse(cls, text: str | None, base: GenerationOptions | None = None, *,
              param: str = "mock_options") -> GenerationOptions:
        """Options from ``"tokens=200,tps=50,mode=multibyte"``, on top of ``base``."""
        base = base or cls()
        if text is None or not text.strip():
            return base
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for part in re.split(r"[,;\s]+", text.strip()):
            if not part:
                continue
            key, _, raw = part.partition("=")
            if key not in kinds:
                raise bad_request(f"Unknown mock option '{key}' in {param}. Known options: "
                                  f"{', '.join(kinds)}.", param=param)
            changes[key] = _convert_option(key, kinds[key], raw, param)
        return dataclasses.replace(base, **changes)


def _convert_option(key: str, kind: Any, raw: str, param: str) -> Any:
    try:
        if key in ("mode", "profile"):
            if raw not in (MODES if key == "mode" else PROFILES):
                raise ValueError
            return raw
        if kind in ("bool", bool):
            return raw.lower() in ("", "1", "true", "yes", "on")
        value = int(raw) if kind in ("int", int) else float(raw)
    except ValueError:
        expected = {"mode": " or ".join(MODES), "profile": "deep_research"}.get(key, "a number")
        raise bad_request(f"Invalid value for mock option '{key}' in {param}: expected {expected}, got '{raw}'.",
                          param=param) from None
    if not math.isfinite(value):
        raise bad_request(f"Invalid value for mock option '{key}' in {param}: expected a finite number, got "
                          f"'{raw}'.", param=param)
    if value < 0:
        raise bad_request(f"Invalid value for mock option '{key}' in {param}: it must not be negative.",
                          param=param)
    if key in ("ttft", "queue_delay", "tool_time") and value > MAX_SECONDS:
        raise bad_request(f"Invalid value for mock option '{key}' in {param}: at most {MAX_SECONDS:g} seconds, "
                          f"got '{raw}'.", param=param)
    return value


class ReplyScript:
    """Exact replies (or agent trajectories) for given prompts, loaded from a JSON file.

    The file holds either an object mapping prompts to replies, or a list of ``{"prompt"|"contains": ...,
    "reply"|"agent": ...}`` entries, where ``agent`` is a trajectory (see :mod:`mock_server.trajectory`); ``"*"`` as
    a prompt is the fallback. Prompts match the last user message, stripped.
    """

    def __init__(self, entries: list[tuple[str, str, str | list[dict[str, Any]]]]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, path: str | Path) -> ReplyScript:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        entries: list[tuple[str, str, str | list[dict[str, Any]]]] = []
        if isinstance(data, dict):
            entries = [("prompt", str(k), str(v)) for k, v in data.items()]
        elif isinstance(data, list):
            for item in data:
                if not isinstance(item, dict) or not ({"reply", "agent"} & item.keys()) \
                        or not ({"prompt", "contains"} & item.keys()):
                    raise ValueError(f"{path}: each entry needs 'reply' or 'agent', and 'prompt' or 'contains': "
                                     f"{item!r}")
                kind = "prompt" if "prompt" in item else "contains"
                if "agent" in item:
                    try:
                        steps = check_script(item["agent"], param=f"agent of {path} entry {len(entries)}")
                    except APIError as exc:
                        raise ValueError(exc.message) from None
                    entries.append((kind, str(item[kind]), steps))
                else:
                    entries.append((kind, str(item[kind]), str(item["reply"])))
        else:
            raise ValueError(f"{path}: expected a JSON object or list of entries")
        return cls(entries)

    def _match(self, prompt: str) -> str | list[dict[str, Any]] | None:
        prompt = prompt.strip()
        fallback = None
        for kind, pattern, value in self._entries:
            if kind == "prompt" and pattern == "*":
                fallback = value
            elif (kind == "prompt" and pattern.strip() == prompt) or (kind == "contains" and pattern in prompt):
                return value
        return fallback

    def reply_for(self, prompt: str) -> str | None:
        value = self._match(prompt)
        return value if isinstance(value, str) else None

    def agent_for(self, prompt: str) -> list[dict[str, Any]] | None:
        value = self._match(prompt)
        return value if isinstance(value, list) else None


def conversation_seed(seed: int, parts: list[str]) -> int:
    """A stable 64-bit seed from the options' seed and the conversation (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(json.dumps([seed, parts], ensure_ascii=False).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def plan_reply(options: GenerationOptions, conversation: list[str], scripted: str | None) -> list[str]:
    """The reply as its list of text deltas."""
    rng = random.Random(conversation_seed(options.seed, conversation))
    if scripted is not None:
        return _split_scripted(scripted, rng)
    if options.mode == "multibyte":
        return _multibyte_tokens(rng, options.tokens)
    return _text_tokens(rng, options.tokens, conversation[-1].partition(": ")[2] if conversation else "")


_WORDS = tuple(
    """
    market demand revenue growth segment launch pricing channel margin customer retention forecast
    quarter competitor adoption pipeline strategy risk regulatory supply cost analysis signal trend
    portfolio region enterprise partner product feature roadmap baseline scenario upside downside volume
    share premium elasticity cohort funnel conversion churn acquisition budget capacity inventory
    logistics compliance the a of and to in for with on by across while because therefore however
    overall notably strong modest steady early late new existing key primary secondary expected
    projected measured observed
    """.split()
)


def _text_tokens(rng: random.Random, count: int, prompt: str) -> list[str]:
    topic = " ".join(re.findall(r"\w+", prompt)[:6]) or "the request"
    tokens = [f"{w} " for w in ["##", "Notes", "on", *topic.split()]]
    tokens[-1] = tokens[-1].rstrip() + "\n\n"
    need = max(0, count - len(tokens))
    # Draw everything at once: one call per list, not one per word (replies can be tens of thousands of words).
    words = rng.choices(_WORDS, k=need)
    rolls = [rng.random() for _ in range(need)]
    lengths = iter(rng.choices(range(6, 17), k=need // 6 + 2))
    ends = iter(rng.choices([".", ".", ".", "!", ";"], k=need // 6 + 2))
    left = next(lengths)
    capital = True
    for word, roll in zip(words, rolls, strict=True):
        if capital:
            word = word.capitalize()
            capital = False
        left -= 1
        if left <= 0:
            end = next(ends, ".")
            tokens.append(word + end + ("\n\n" if roll < 0.2 else " "))
            left = next(lengths, 10)
            capital = end != ";"
        elif roll > 0.96:
            tokens.append(word + " - " if roll > 0.98 else word + ", ")
        else:
            tokens.append(word + " ")
    tokens = tokens[:count]
    if tokens:
        tokens[-1] = tokens[-1].rstrip(" ,;-!.\n") + "."
    return tokens


_MULTIBYTE_PIECES = (
    "市场分析", "第四季度", "产品发布", "增长", "风险评估", "客户", "合规报告", "深度研究",
    "🚀", "📈", "👩\u200d💻", "👨\u200d👩\u200d👧\u200d👦", "🇨🇳", "🇺🇸", "👍🏽", "✅", "❤\ufe0f",
    "e\u0301", "n\u0303", "a\u0308", "Z\u0351\u0337", "o\u0302\u0323",
    "naïve", "café", "Ελληνικά", "Привет", "עברית", "日本語", "한국어", " ", " ", "，", "。", "\n",
)


def _multibyte_tokens(rng: random.Random, count: int) -> list[str]:
    tokens: list[str] = []
    while len(tokens) < count:
        piece = rng.choice(_MULTIBYTE_PIECES)
        while piece and len(tokens) < count:
            n = rng.randint(1, 3)
            tokens.append(piece[:n])
            piece = piece[n:]
    return tokens


def _split_scripted(text: str, rng: random.Random) -> list[str]:
    """Split an exact reply into word-sized deltas (whitespace stays with the word before it)."""
    tokens = re.findall(r"\S+\s*|\s+", text)
    return tokens or ([text] if text else [])
