"""Text from a user or a file, made safe to print: control characters shown escaped, never obeyed.

A note, a tag, a record's error, a log line or a run id read from a file may hold terminal escape sequences
(``\\x1b]0;TITLE\\x07`` retitles the window, ``\\x1b[2J`` clears the screen) or bidirectional overrides that make a
line read differently from what it holds. Both front ends pass such text through ``printable`` before it reaches
the terminal (Rich markup is escaped separately, where the text goes into markup).
"""

from __future__ import annotations

import re

# C0 controls but tab (and newline where lines are kept), DEL, C1 controls, and the Unicode bidi controls and
# line/paragraph separators a terminal obeys or a reader misreads.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_KEEP_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, lines: bool = False) -> str:
    """``str(text)`` with every control character written as its escape (``\\x1b``, ``\\u202e``); ``lines=True``
    keeps newlines (a log, a traceback), otherwise a newline is escaped too (one field, one line)."""
    return (_CONTROL_KEEP_LINES if lines else _CONTROL).sub(_escaped, str(text))


def markup_safe(text: object, *, lines: bool = False) -> str:
    """``printable`` text to put inside Rich markup: its own square brackets are escaped, never applied."""
    from rich.markup import escape  # rich is loaded by every front end already; the app core needs it only here

    return escape(printable(text, lines=lines))
