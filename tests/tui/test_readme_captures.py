"""The dashboard captures of README.md and docs/dashboard.md are the test suite's snapshots: a capture that no
longer matches fails here."""

from __future__ import annotations

import pytest

from tests.helpers import ROOT

SNAPSHOTS = ROOT / "tests" / "__snapshots__" / "test_tui"
# The line above each capture (README.md or docs/dashboard.md) → the snapshot it shows.
PAGES = (ROOT / "README.md", ROOT / "docs" / "dashboard.md")
CAPTURES = {
    "Runs:": "runs.txt",
    "Four runs marked with `Space`": "bulk_cancel.txt",
    "Run detail (curves tab):": "detail.txt",
    "Results:": "results.txt",
    "Launch (after a mistyped override": "launch_override_error.txt",
    "Compare (three demo runs": "compare.txt",
}


def _trimmed(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def readme_capture(caption: str) -> list[str]:
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith(caption)), None)
        if start is not None:
            break
    else:
        raise AssertionError(f"no capture under {caption!r} in README.md or docs/dashboard.md")
    assert lines[start + 1] == "```text", f"no text block under {caption!r}"
    end = lines.index("```", start + 2)
    return _trimmed(lines[start + 2:end])


@pytest.mark.parametrize("caption, snapshot", sorted(CAPTURES.items()))
def test_readme_capture_is_the_current_snapshot(caption: str, snapshot: str) -> None:
    expected = _trimmed((SNAPSHOTS / snapshot).read_text(encoding="utf-8").splitlines())
    assert readme_capture(caption) == expected, (
        f"the capture under {caption!r} differs from tests/__snapshots__/test_tui/{snapshot}; "
        "copy the snapshot into the page")
