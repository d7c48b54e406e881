"""How the science reports progress while it works: ``listener(kind, data)``.

The kinds a run emits ("phase", "batch", "epoch", "invariance", "eval", "warning") reach the worker, which
writes them to ``<run>/progress.json``; amltui/app/runs/progress.py reads them back for `ls` and the dashboard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Listener = Callable[[str, dict[str, Any]], None]
