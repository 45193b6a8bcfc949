"""One response being generated: its deterministic plan of events, its pacing, and the log streams read from.

A :class:`Run` turns a :class:`~mock_server.records.ResponseRecord` into a fixed list of steps (``created``, …,
deltas, …, ``completed``) and emits them on the event loop at the configured pace into an append-only log of SSE
frames. Streams read that log by index, so a replay followed by live events has no gap and no duplicate, and any
number of clients can follow one run. The run goes on whatever its clients do, unless it is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from .faults import FaultSpec
from .generation import GenerationOptions
from .items import EVENT_TYPES as ITEM_EVENT_TYPES
from .items import ITEM_STEP_KINDS, ItemPlan, OutputItems, Step, item_plan, item_steps
from .records import ResponseRecord

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def item_plans(record: ResponseRecord) -> list[ItemPlan]:
    """The plans of the leg's items before its answer."""
    return [item_plan(spec, record.id, i) for i, spec in enumerate(s for s in record.trajectory if "answer" not in s)]


def plan_steps(record: ResponseRecord, options: GenerationOptions, faults: FaultSpec, deltas: list[str],
               annotations: list[tuple[int, dict[str, Any]]] | None = None) -> list[Step]:
    """The complete, deterministic list of steps of a response, faults applied."""
    ending = "completed"
    if record.max_output_tokens is not None and len(deltas) > record.max_output_tokens:
        deltas, ending = deltas[: record.max_output_tokens], "incomplete"
    if faults.incomplete_at is not None and faults.incomplete_at < len(deltas):
        deltas, ending = deltas[: faults.incomplete_at], "incomplete"
    ttft = faults.slow_first_token if faults.slow_first_token is not None else options.ttft
    gap = 1.0 / options.tps if options.tps > 0 else 0.0
    steps = [Step("created")]
    if record.background:
        steps.append(Step("queued"))
    steps.append(Step("in_progress", delay=options.queue_delay if record.background else 0.0))
    first = ttft
    for index, plan in enumerate(item_plans(record)):
        item = item_steps(plan, index, gap, options.tool_time)
        steps += [item[0]._replace(delay=first), *item[1:]]
        first = gap
    if record.has_answer:
        steps += [Step("item_added", delay=first if not deltas else 0.0), Step("part_added")]
        announced: dict[int, int] = {}
        for at, _ in annotations or ():
            announced[at] = announced.get(at, 0) + 1
        number = 0
        for at, delta in enumerate(deltas):
            steps.append(Step("delta", delta, first if at == 0 else gap))
            for _ in range(announced.get(at, 0)):
                steps.append(Step("annotation", part=number))
                number += 1
        steps += [Step("text_done"), Step("part_done"), Step("item_done")]
    steps.append(Step(ending))
    failing = faults.fail_index(record.id, len(steps))
    if failing is not None and failing < len(steps):
        steps = [*steps[:failing], Step("failed")]
    return steps


class Run:
    """The live state of one response: its record, its event log, and the task generating it."""

    def __init__(self, record: ResponseRecord, steps: list[Step], faults: FaultSpec, options: GenerationOptions,
                 on_event: Callable[[Run, int, str, str], object] | None = None,
                 on_record: Callable[[Run], None] | None = None,
                 annotations: list[tuple[int, dict[str, Any]]] | None = None) -> None:
        self.record = record
        self.items = OutputItems(item_plans(record))
        self._annotations = [a for _, a in annotations or ()]
        self.steps = steps
        self.faults = faults
        self.options = options
        self.frames: list[bytes] = []
        self._parts: list[str] = [record.text] if record.text else []  # the text as deltas, joined when needed
        self.stream_connections = 0
        self.http_errors = dict(faults.http_errors)
        self._on_event = on_event
        self._on_record = on_record
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self.deleted = False
        self.announced = False  # whether its end was sent as a webhook
        m = record.message_id
        self._delta_prefix = ('{"type":"response.output_text.delta","sequence_number":')
        self._message_index = record.message_index
        self._delta_middle = f',"item_id":"{m}","output_index":{self._message_index},"content_index":0,"delta":'
        self._delta_suffix = ',"logprobs":[]' + ("" if not options.timestamps else ',"mock_emitted_at":')

    # -- reading -----------------------------------------------------------------------------------------------
    def sync_text(self) -> None:
        """Bring ``record.text`` up to date with the deltas emitted so far."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        self.record.text = self._parts[0] if self._parts else ""
        if self.items.plans:
            self.record.output_items = self.items.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """The Response object as it stands now."""
        self.sync_text()
        return self.record.to_json()

    @property
    def finished(self) -> bool:
        """True once the response has ended (terminal, or cancelled)."""
        return self.record.terminal

    @property
    def closed(self) -> bool:
        """True once no more events will be appended: the response has ended or was deleted."""
        return self.deleted or self.record.terminal

    def wait_for_more(self, count: int) -> asyncio.Future[None]:
        """A future that completes when the log has more than ``count`` frames or the run is closed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if len(self.frames) > count or self.closed:
            fut.set_result(None)
        else:
            self._waiters.append(fut)
        return fut

    async def wait_finished(self) -> None:
        while not self.closed:
            await self.wait_for_more(len(self.frames))

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- generating --------------------------------------------------------------------------------------------
    def start(self, from_step: int = 0) -> None:
        """Generate steps ``from_step`` onwards in a task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._generate(from_step), name=self.record.id)

    def replay_silently(self, frames: list[bytes]) -> None:
        """Rebuild the state after ``frames`` (loaded from storage) without emitting them again."""
        for index in range(len(frames)):
            self._apply(index, self.steps[index])
        self.sync_text()
        self.frames = list(frames)

    async def _generate(self, start: int) -> None:
        loop = asyncio.get_running_loop()
        steps = self.steps
        index = start
        due = loop.time()  # when steps[index] is due
        try:
            while index < len(steps):
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                now = loop.time()
                # Emit every step that is due by now, then wake the readers once.
                while True:
                    self._emit(index, steps[index])
                    index += 1
                    if index >= len(steps):
                        break
                    due += steps[index].delay
                    if due > now:
                        break
                self._notify()
        except Exception as exc:  # a bug here must end the response, not leave it queued forever
            self._fail_internally(index, exc)
        finally:
            self._notify()

    def _fail_internally(self, seq: int, exc: Exception) -> None:
        traceback.print_exception(exc, file=sys.stderr)
        record = self.record
        if record.item_status == "in_progress":
            record.item_status = "incomplete"
        self.items.interrupt()
        record.error = {"code": "server_error", "message": f"The mock server hit an unexpected error while "
                        f"generating this response ({type(exc).__name__}); this is a bug in mock_server."}
        self.sync_text()
        record.finish("failed")
        event = {"type": "response.failed", "sequence_number": len(self.frames), "response": record.to_json()}
        self.frames.append(b"event: response.failed\ndata: " + json.dumps(event).encode() + b"\n\n")
        if self._on_record is not None:
            self._on_record(self)

    def _emit(self, index: int, step: Step) -> None:
        data = self._apply(index, step)
        event_type = _EVENT_TYPES.get(step.kind, step.kind)  # a replayed step's kind is its event's type
        self.frames.append(f"event: {event_type}\ndata: {data}\n\n".encode())
        if self._on_event is not None:
            self._on_event(self, index, event_type, data)
        if event_type in _LIFECYCLE and self._on_record is not None:
            self._on_record(self)

    def _apply(self, seq: int, step: Step) -> str:
        """Apply ``step`` to the record and return the event's JSON."""
        r = self.record
        kind = step.kind
        if kind == "delta":
            self._parts.append(step.delta)  # no str += : replies can be tens of thousands of deltas
            r.output_tokens += 1
            tail = self._delta_suffix + (f"{time.time():.6f}}}" if self.options.timestamps else "}")
            return f"{self._delta_prefix}{seq}{self._delta_middle}{_dumps(step.delta)}{tail}"
        if kind in ITEM_STEP_KINDS or (step.item >= 0 and kind in ("item_added", "item_done")):
            if kind == "summary_delta":
                r.reasoning_tokens += 1
                r.output_tokens += 1
            elif kind in ("code_delta", "arguments_delta"):
                r.output_tokens += 1
            item_event = self.items.apply(seq, step)
            return _dumps({"type": _EVENT_TYPES[kind], **item_event})
        event: dict[str, Any] = {"type": _EVENT_TYPES[kind], "sequence_number": seq}
        self.sync_text()
        index = self._message_index
        if kind == "created":
            r.status = "queued" if r.background else "in_progress"
            event["response"] = r.to_json()
        elif kind == "queued":
            r.status = "queued"
            event["response"] = r.to_json()
        elif kind == "in_progress":
            r.status = "in_progress"
            event["response"] = r.to_json()
        elif kind == "item_added":
            r.item_status = "in_progress"
            event.update(output_index=index, item=r.message_item(status="in_progress", with_content=False))
        elif kind in ("part_added", "part_done"):
            text = "" if kind == "part_added" else r.text
            annotations = [] if kind == "part_added" else list(r.annotations)
            event.update(item_id=r.message_id, output_index=index, content_index=0,
                         part={"type": "output_text", "text": text, "annotations": annotations, "logprobs": []})
        elif kind == "annotation":
            annotation = self._annotations[step.part]
            r.annotations.append(annotation)
            event.update(item_id=r.message_id, output_index=index, content_index=0, annotation_index=step.part,
                         annotation=annotation)
        elif kind == "text_done":
            event.update(item_id=r.message_id, output_index=index, content_index=0, text=r.text, logprobs=[])
        elif kind == "item_done":
            r.item_status = "incomplete" if self.steps[-1].kind == "incomplete" else "completed"
            event.update(output_index=index, item=r.message_item())
        else:  # terminal
            if kind == "incomplete":
                r.incomplete_details = {"reason": "max_output_tokens"}
            elif kind == "failed":
                self.items.interrupt()
                self.sync_text()
                if r.item_status == "in_progress":
                    r.item_status = "incomplete"
                r.error = {"code": "server_error",
                           "message": f"The model failed to generate a response (mock fault at event {seq})."}
            r.finish(kind)
            event["response"] = r.to_json()
        return _dumps(event)

    def cancel(self) -> bool:
        """Stop generating and mark the response ``cancelled``; False if it had already ended."""
        if self.finished:
            return False
        if self._task is not None:
            self._task.cancel()
        if self.record.item_status == "in_progress":
            self.record.item_status = "incomplete"
        self.items.interrupt()
        self.sync_text()
        self.record.finish("cancelled")
        if self._on_record is not None:
            self._on_record(self)
        self._notify()
        return True

    def discard(self) -> None:
        """Stop generating without recording an outcome (the response was deleted); its streams end at once."""
        self.deleted = True
        if self._task is not None:
            self._task.cancel()
        self._notify()

    async def stop(self) -> None:
        """Stop the generating task without changing the record (server shutdown)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


_EVENT_TYPES = {
    "created": "response.created",
    "queued": "response.queued",
    "in_progress": "response.in_progress",
    "item_added": "response.output_item.added",
    "part_added": "response.content_part.added",
    "delta": "response.output_text.delta",
    "text_done": "response.output_text.done",
    "part_done": "response.content_part.done",
    "item_done": "response.output_item.done",
    "annotation": "response.output_text.annotation.added",
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
    **ITEM_EVENT_TYPES,
}
#: The events after which a response's record is saved.
_LIFECYCLE = frozenset(_EVENT_TYPES[kind] for kind in ("created", "in_progress", "completed", "incomplete", "failed"))
