"""``python -m agent_nb`` (also the ``agent_nb`` console script): see :mod:`agent_nb.batch._cli`."""

from __future__ import annotations

import sys

from .batch._cli import main

if __name__ == "__main__":
    sys.exit(main())
