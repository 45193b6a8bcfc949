"""Batches: thousands of background runs of one agent, failures isolated, resumable by name, shared by processes.

``batch = agent.batch(prompts, name="extract")`` starts working at once (``await batch`` / ``batch.wait()``);
:class:`RateLimit` sets explicit budgets; :class:`BatchProgress` is what every view shows.
"""

from __future__ import annotations

from ._batch import Batch
from ._pacer import RateLimit
from ._progress import BatchProgress
from ._results import BatchResult

__all__ = ["Batch", "BatchProgress", "BatchResult", "RateLimit"]
