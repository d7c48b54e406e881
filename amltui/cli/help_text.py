"""How commands read in `--help`: whole-phrase summaries in command lists, `RUN` (not `{run}`) in usage lines.

Click cuts a command's summary at its first period ("Invariance examples (Tramèr et al.") and then at a fixed
width with "..."; Typer writes a required argument as ``{name}`` and an argument's Python type (``<str>``).
``Command`` and ``Group`` fix both through Click's public hooks (``get_short_help_str``, ``collect_usage_pieces``,
``format_options``); every command and group is declared with ``cls=`` one of them.
"""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperCommand, TyperGroup

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


def _usage_name(param: Any) -> str:
    """An argument as click writes it in a usage line: ``RUN`` / ``[RUN]`` / ``RUN...`` (Typer writes ``{run}``).
    Its name is its declared metavar (every argument declares an upper-case one: tests/cli/test_plain_typer.py)."""
    name = param.metavar or param.name.upper()
    name = name if "..." in name or param.nargs == 1 else name + "..."  # "RUN... TAG" already says it
    return name if param.required else f"[{name}]"


def _help_record(param: Any, ctx: Any) -> tuple[str, str] | None:
    """A parameter's line in `--help` without Python's type names: no ``<str>`` after an argument's name."""
    record = param.get_help_record(ctx)
    if record is None or param.param_type_name != "argument":
        return record
    name, text = record
    for python_type in (" <str>", " <list[str]>"):
        name = name.removesuffix(python_type)
    return name, text


class Command(TyperCommand):
    """A command whose `--help` reads well: a whole-phrase summary in command lists, plain argument names in
    its usage line and argument list. Every command is registered with ``cls=Command``."""

    def get_short_help_str(self, limit: int = 45) -> str:
        return self.short_help or summary(self.help or "")

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [_usage_name(p) for p in self.get_params(ctx) if p.param_type_name == "argument"]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        records = [(p.param_type_name, _help_record(p, ctx)) for p in self.get_params(ctx)]
        for kind, title in (("argument", "Arguments"), ("option", "Options")):
            rows = [record for of, record in records if of == kind and record is not None]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class Group(TyperGroup):
    """A group of commands (`amltui`, `amltui invariance`, `amltui store`) whose own summary is a whole phrase."""

    def get_short_help_str(self, limit: int = 45) -> str:
        return self.short_help or summary(self.help or "")
