"""The answer message of a response: its text deltas and the citations announced along the way."""

from __future__ import annotations

from typing import Any

from .generation import GenerationOptions, plan_reply
from .items import word_deltas
from .records import ResponseRecord
from .trajectory import answer_with_citations


def answer_deltas(record: ResponseRecord, options: GenerationOptions
                  ) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """The answer as deltas (scripted, or generated from the conversation) and its annotations by delta."""
    step = record.trajectory[-1] if record.trajectory else {}
    if not record.has_answer:
        return [], []
    text = step.get("answer")
    if isinstance(text, str):
        deltas = list(word_deltas(text))
    else:
        deltas = plan_reply(options, record.conversation, record.scripted)
        lead = step.get("lead")
        if lead:
            deltas = [*word_deltas(str(lead)), *deltas]
    citations = step.get("citations") or []
    if isinstance(text, str) or record.scripted is not None:
        # An exact reply stays exact: only citations on words it already has.
        citations = [c for c in citations if c.get("text")]
    return answer_with_citations(deltas, citations)
