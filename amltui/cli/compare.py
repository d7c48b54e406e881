"""Commands that compare and label runs: diff, tag, note (the work: amltui/app/service/compare.py, annotate.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from amltui.app.safetext import markup_safe, printable
from amltui.app.service import annotate, compare, find_runs
from amltui.cli import options as o
from amltui.cli.common import (
    console,
    fail,
    open_store,
    print_table,
    reap_lost,
    resolve_run,
    table_width,
    user_errors,
)
from amltui.cli.help_text import Command


def register(app: typer.Typer) -> None:
    for command in (diff, tag, note):
        app.command(cls=Command)(command)


def diff(
    runs: Annotated[list[str], typer.Argument(metavar="RUN", help="Two or more run ids (or unique prefixes).")],
    all_: Annotated[bool, typer.Option("--all", help="Show every key, not only those that differ.")] = False,
    wide: o.Wide = False,
    runs_dir: o.RunsDir = None,
) -> None:
    """Compare runs side by side: config and final metrics.

    Shows the record facts, config and final metrics in which the runs differ (every key with --all). Values are
    verbatim: strings as stored, everything else as JSON; "(absent)" = the run has no such key.
    """
    store = open_store(runs_dir)
    reap_lost(store)
    records = [resolve_run(store, text) for text in runs]
    with user_errors():
        rows = compare.diff_runs(store, records, everything=all_)
    if not rows:
        console.print(f"no differences between {', '.join(r['id'] for r in records)} in the record, config or "
                      "metrics (--all shows every value)", highlight=False, markup=False)
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("", no_wrap=True, style="dim")
    table.add_column("key", no_wrap=True)
    for record in records:
        table.add_column(markup_safe(record["id"]), overflow="fold")
    section = None
    for row in rows:
        mark = "" if row.differs else "[dim]"
        table.add_row(row.section if row.section != section else "", markup_safe(row.key),
                      *(mark + markup_safe(v) for v in row.values))
        section = row.section
    print_table(table, table_width(wide))  # values fold at the terminal's width; --wide or a pipe: whole lines


def tag(
    items: Annotated[list[str], typer.Argument(help="One or more run ids (or unique prefixes), then the tag.",
                                               metavar="RUN... TAG")],
    remove: Annotated[bool, typer.Option("--remove", help="Take the tag off instead.")] = False,
    runs_dir: o.RunsDir = None,
) -> None:
    """Tag runs (or --remove a tag).

    `ls` and `show` list tags; `ls --where tag=X`, `export --where tag=X` and `export --group-by tag` use them.
    """
    if len(items) < 2:
        fail("name the runs and then the tag, e.g. `amltui tag RUN_A RUN_B paper-table`")
    *names, label = items
    with user_errors():
        annotate.check_tag(label)
    store = open_store(runs_dir)
    with user_errors():
        records = find_runs(store, names)  # one read of the index for all the names
    with user_errors():
        results = annotate.tag_runs(store, list(dict.fromkeys(r["id"] for r in records)), label, remove=remove)
    for run_id, changed in results:
        what = ("untagged" if changed else "did not have tag") if remove else ("tagged" if changed else "already had")
        console.print(printable(f"{run_id}: {what} {label}"), highlight=False, markup=False)


def note(
    run: o.RunArg,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The note, verbatim (quote it); \"\" clears it.")],
    runs_dir: o.RunsDir = None,
) -> None:
    """Attach a note to a run.

    `show` prints it; a new note replaces the old one, "" clears it.
    """
    store = open_store(runs_dir)
    record = resolve_run(store, run)
    with user_errors():
        saved = annotate.set_note(store, record["id"], text)
    console.print(printable(f"{record['id']}: " + (f"note: {saved}" if saved else "note cleared")), highlight=False,
                  markup=False)
