"""``python -m amltui.tui --runs-dir DIR``: the dashboard without the CLI."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from amltui.tui import run_dashboard


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m amltui.tui", description="The amltui dashboard.")
    parser.add_argument("--runs-dir", type=Path, default=Path(os.environ.get("AMLTUI_RUNS_DIR") or "runs"),
                        help="folder of runs and the store [default: $AMLTUI_RUNS_DIR or ./runs]")
    run_dashboard(parser.parse_args(argv).runs_dir)


if __name__ == "__main__":
    main()
