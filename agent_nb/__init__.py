"""agent-nb: run long AI-agent tasks from Jupyter with background responses that resume exactly."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
