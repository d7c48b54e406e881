"""How commands read in `--help`: whole-phrase summaries in command lists, `RUN` (not `{run}`) in usage lines.

Click cuts a command's summary at its first period ("Invariance examples (Tramèr et al.") and then at a fixed
width with "..."; Typer writes a required argument as ``{name}``. ``tidy`` fixes both on every command of a
group, once, when the group first hands the command out (amltui/cli/__init__.py).
"""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperArgument, TyperOption

SUMMARY_WIDTH = 80  # a longer first sentence is cut at its last clause boundary within this width
ABBREVIATIONS = ("et al", "e.g", "i.e", "vs", "cf", "etc", "approx")
CLAUSE_ENDS = (": ", "; ", " — ", " (")  # never ", ": that would cut a list short


def first_sentence(text: str) -> str:
    """The first sentence of a help text's first paragraph, not cut at an abbreviation's period."""
    paragraph = " ".join((text or "").strip().split("\n\n")[0].split())
    for match in re.finditer(r"\.(\s|$)", paragraph):
        before = paragraph[:match.start()]
        if not before.lower().endswith(ABBREVIATIONS):
            return before
    return paragraph.rstrip(".")


def _balanced(text: str) -> bool:
    return text.count("(") == text.count(")") and text.count("[") == text.count("]")


def summary(text: str, width: int = SUMMARY_WIDTH) -> str:
    """A whole phrase for a command list: the first sentence; if it is longer than ``width``, without its
    parentheses; if still longer, its longest leading clause that fits (or else all of it: never a cut word)."""
    sentence = first_sentence(text)
    if len(sentence) > width:
        sentence = re.sub(r" \([^()]*\)", "", sentence)
    if len(sentence) <= width:
        return sentence
    cuts = [i for end in CLAUSE_ENDS for i in _positions(sentence, end) if i <= width and _balanced(sentence[:i])]
    return sentence[:max(cuts)].rstrip(" ,;:") if cuts else sentence


def _positions(text: str, part: str) -> list[int]:
    return [m.start() for m in re.finditer(re.escape(part), text)]


class _UsageArgument(TyperArgument):
    """An argument written as click writes it: ``RUN`` / ``[RUN]`` / ``RUN...``, no braces, no ``<str>``."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw.upper()
        name = name if "..." in name or self.nargs == 1 else name + "..."  # "RUN... TAG" already says it
        return name if self.required else f"[{name}]"

    def _rich_display_name(self) -> str:
        return super()._rich_display_name().upper()

    def display_type_rich(self, ctx: Any) -> str | None:
        text = super().display_type_rich(ctx)
        return None if text in ("<str>", "<list[str]>") else text


class _RepeatableOption(TyperOption):
    """A repeatable option shows the type of one value (``--set <str>``), not Python's ``<list[str]>``."""

    def display_type_rich(self, ctx: Any) -> str | None:
        text = super().display_type_rich(ctx)
        match = re.fullmatch(r"<list\[(\w+)\]>", text or "")
        return f"<{match.group(1)}>" if match else text


def tidy(command: Any) -> Any:
    """Give ``command`` (and a group's sub-commands) a whole-phrase summary and plain argument names; idempotent."""
    if command is None or getattr(command, "_amltui_tidy", False):
        return command
    command._amltui_tidy = True
    if not command.short_help and command.help:
        command.short_help = summary(command.help)
    for param in command.params:
        if type(param) is TyperArgument:
            param.__class__ = _UsageArgument
        elif type(param) is TyperOption and getattr(param, "multiple", False):
            param.__class__ = _RepeatableOption
    for sub in (getattr(command, "commands", None) or {}).values():
        tidy(sub)
    return command
