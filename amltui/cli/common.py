"""Shared pieces of the command line: consoles, errors, the store and run lookup."""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from amltui.app import service
from amltui.app.errors import UserError, did_you_mean
from amltui.app.runs.folders import default_runs_dir
from amltui.app.runs.records import DAMAGED, unindexed_folders
from amltui.app.runs.status_style import status_style
from amltui.app.runs.store import REBUILD_HINT, Store, StoreError
from amltui.app.safetext import markup_safe, printable
from core.config import CHOICES, ConfigError
from core.metrics import METRIC_LABELS, METRIC_ORDER

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error the user can act on (no traceback) and exit. The message is shown verbatim (it may quote
    user input or stored text, so Rich markup in it is escaped, never applied)."""
    # soft_wrap: one line however long (paths), so it can be grepped and copied; the terminal wraps it.
    err.print(f"[bold red]error:[/] {markup_safe(message, lines=True)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


_NOT_A_CHOICE = re.compile(r"(?:Value error, )?'(?P<value>.*)' is not one of (?P<choices>.*?)\.?$")


def choice_error(message: str, option: str) -> str:
    """A refused option value as amltui words it: what was given, a "did you mean", the choices. Typer's own
    text ("Value error, 'quik' is not one of …") is kept when it is not about choices."""
    found = _NOT_A_CHOICE.search(message)
    if not found:
        return f"{option}: {message}" if option else message
    choices = re.findall(r"'([^']*)'", found["choices"])
    return (f"{option} {found['value']!r} is not a choice; {did_you_mean(found['value'], choices)}"
            f"choose one of: {', '.join(choices)}")


def describe_os_error(exc: OSError) -> str:
    """A one-line explanation of a file-system failure with the fix (disk full, read-only, permissions)."""
    where = exc.filename or "the runs folder"
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        if reason.startswith("no space left on"):  # already says where and how much (amltui.app.fsutil)
            return f"{reason} (or use another --runs-dir)"
        return f"no space left on the device holding {where}; free some space there (or use another --runs-dir)"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (f"cannot write {where}: {reason}; the runs folder must be writable by you "
                "(or use another --runs-dir)")
    return f"{reason}: {where}"


@contextlib.contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Within the block, a request the user must change (UserError and the domain errors it stands for) or a
    file-system failure becomes ``error: …`` on stderr and exit code 2 (UserError.code where it says otherwise)."""
    try:
        yield
    except UserError as exc:
        fail(prefix + str(exc), code=exc.code)
    except (StoreError, ConfigError, ValueError) as exc:  # FilterError, GpuError, ConfigError are ValueErrors
        fail(prefix + str(exc))
    except OSError as exc:
        fail(prefix + describe_os_error(exc))


def open_store(runs_dir: Path | None, *, create: bool = False) -> Store:
    """The run index of --runs-dir ($AMLTUI_RUNS_DIR, ./runs). Only commands that start work (run, reproduce,
    invariance generate/show) pass ``create``; any other refuses a folder that does not exist (a typo in --runs-dir
    or $AMLTUI_RUNS_DIR must not leave an empty folder behind and report "no runs")."""
    folder = Path(runs_dir) if runs_dir else default_runs_dir()
    if not folder.exists() and not create:
        where = ("--runs-dir" if runs_dir else "$AMLTUI_RUNS_DIR" if os.environ.get("AMLTUI_RUNS_DIR")
                 else "the default: ./runs in the current folder")
        fail(f"the runs folder {folder} does not exist ({where}); check the path, or start a run with "
             "`amltui run`, which creates it")
    with user_errors():
        return service.open_store(runs_dir)


def reap_lost(store: Store) -> list[str]:
    """Mark dead workers' runs failed (lost) before showing anything; a corrupt store is a clear error."""
    with user_errors():
        return service.reap_lost(store)


def all_records(store: Store) -> list[dict[str, Any]]:
    """Every record, checked: a damaged one (bad fields, folder gone) has status "damaged" and the reason."""
    with user_errors():
        return service.records(store)


def warn_damaged(records: list[dict[str, Any]], what: str = "") -> None:
    """One stderr line per damaged run, with the way out."""
    bad = [r for r in records if r.get("status") == DAMAGED]
    for r in bad:
        err.print(printable(f"{r['id']}: damaged{what}: {r.get(DAMAGED)}"), highlight=False, markup=False)
    if bad:
        err.print("fix: `amltui store rebuild` re-reads the run folders; `amltui rm RUN` deletes a damaged run",
                  highlight=False, markup=False)


def warn_unindexed(store: Store, records: list[dict[str, Any]]) -> list[str]:
    """Warn about run folders the index does not list (so they are not silently missing); returns them."""
    missing = unindexed_folders(store.runs_dir, (r["id"] for r in records))
    if missing:
        # folder names come from the file system: they may hold escape sequences
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        err.print(printable(f"warning: {len(missing)} run folder(s) in {store.runs_dir} are not in the index "
                            f"({shown}); {REBUILD_HINT}"), highlight=False, markup=False)
    return missing


def resolve_run(store: Store, text: str) -> dict[str, Any]:
    """A run by its id or a unique prefix of it."""
    with user_errors():
        return service.find_run(store, text)


def status_text(status: str) -> str:
    return f"[{status_style(status)}]{markup_safe(str(status))}[/]"


def print_metrics(record: dict[str, Any]) -> None:
    metrics, counts = record.get("metrics") or {}, record.get("metrics_n") or {}
    if not metrics:
        return
    note = record.get("target_table_note")
    pgd = record.get("pgd") or {}
    caption = []
    if note and ("A_IA" in metrics or "A_IA_target" in metrics):
        caption.append(f"† A_IA, A_IA→target: {note}")
    if isinstance(pgd, dict) and pgd.get("steps") is not None and "A_PGD" in metrics:
        caption.append(f"A_PGD: PGD-{pgd['steps']}, L∞ ε {pgd.get('eps')}, step α {pgd.get('alpha')}")
    if "A_PGD_at_eps_s" in metrics:  # pgd_eps ≠ ε_s: the masking flag's PGD at ε_s (core/flags.py)
        caption.append(f"the same PGD at ε_s (for the gradient-masking flag): {metrics['A_PGD_at_eps_s']:.2f}% "
                       f"on {counts.get('A_PGD_at_eps_s', '?')} images")
    for split, agreement in (record.get("inv_agreement") or {}).items():
        caption.append(f"fast invariance search ({split}): same neighbour as exact on "
                       f"{100 * agreement['same_neighbour']:.1f}% of {agreement['sample']} sampled queries")
    table = Table(title=markup_safe(f"{record['id']} ({record.get('status')})"))
    table.add_column("metric")
    table.add_column("accuracy %", justify="right")
    table.add_column("n", justify="right")
    for key in METRIC_ORDER:
        if key in metrics:
            mark = "†" if note and key in ("A_IA", "A_IA_target") else ""
            table.add_row(METRIC_LABELS[key] + mark, f"{metrics[key]:.2f}", markup_safe(str(counts.get(key, ""))))
    console.print(table)
    for line in caption:  # under the table, not as its caption: a caption wraps to the table's narrow width
        console.print(printable(f"  {line}"), highlight=False, markup=False)
    if record.get("selected_epoch") and record.get("select", "last") != "last":
        console.print(f"  weights of epoch {record['selected_epoch']} (select={record['select']}: best PGD accuracy "
                      f"on a hold-out of {record.get('n_holdout', '?')} training images)", highlight=False)
    print_flags(record)


FLAG_MARK = "⚠"


def print_flags(record: dict[str, Any]) -> None:
    """Each flag of a run with the rule that tripped and its numbers (core/flags.py)."""
    for detail in record.get("flag_details") or []:
        console.print(f"[bold yellow]{FLAG_MARK} {markup_safe(str(detail.get('name')))}[/]: "
                      + markup_safe("; ".join(str(r) for r in detail.get("reasons", []))), highlight=False)
        console.print(f"    rule: {markup_safe(str(detail.get('rule', '')))}", highlight=False)
    for name in record.get("flags") or []:  # names without details (written by an older amltui)
        if not any(d.get("name") == name for d in record.get("flag_details") or []):
            console.print(f"[bold yellow]{FLAG_MARK} {markup_safe(str(name))}[/]", highlight=False)


# ---- tables that fit their medium ---------------------------------------------------------------------------
def table_width(wide: bool = False) -> int | None:
    """The width a table must fit: the terminal's; None (no limit: whole rows) with --wide, or when the output is
    piped and $COLUMNS does not name a width (a pipe is not 80 columns wide; `cut`/`less -S` can narrow it)."""
    if wide or (not console.is_terminal and not os.environ.get("COLUMNS")):
        return None
    return console.width


def fit_columns(columns: list[str], widths: dict[str, int], width: int | None, priority: list[str],
                keep: int = 2) -> tuple[list[str], list[str]]:
    """(shown, dropped): whole columns are left out, least important (last in ``priority``) first, until a row
    fits ``width`` (None: all fit); a cell is never cut. ``widths``: each column's widest text."""
    shown, dropped = list(columns), []
    ranked = sorted(columns, key=lambda c: priority.index(c) if c in priority else len(priority))
    while width is not None and len(shown) > keep and sum(widths[c] + 3 for c in shown) - 1 > width:
        victim = next(c for c in reversed(ranked) if c in shown)
        shown.remove(victim)
        dropped.append(victim)
    return shown, dropped


def dropped_note(dropped: list[str], width: int | None) -> str | None:
    """The line under a table that left columns out: which, and how to see them."""
    if not dropped:
        return None
    return (f"not shown at {width} columns: {', '.join(dropped)} (--wide shows every column; a wider terminal "
            "shows more)")


def print_table(table: Table, width: int | None, dropped: list[str] | None = None) -> None:
    """Print a table at ``width`` (None: its natural width, however wide) and say which columns were left out."""
    if width is None:
        from rich.measure import Measurement

        natural = Measurement.get(console, console.options.update(width=100_000), table).maximum
        out = Console(width=max(natural, 20), file=console.file, force_terminal=console.is_terminal,
                      no_color=console.no_color, highlight=False)
        out.print(table)
    else:
        console.print(table)
    note = dropped_note(dropped or [], width)
    if note:
        console.print(note, highlight=False, markup=False, style="dim")


def parse_list(text: str, what: str, convert: type = str) -> list:
    """'a,b' → ['a', 'b'] for names; seeds (convert=int) also take ranges: '0-2,5' (as the dashboard)."""
    with user_errors():
        names = service.parse_seeds(text) if convert is int else service.parse_names(text, what)
        if what == "--variants":  # refused here with a suggestion, before any config is built
            for name in names:
                if name not in CHOICES["variant"]:
                    raise UserError(f"--variants: {name!r} is not a variant",
                                    f"{did_you_mean(name, CHOICES['variant'])}choose from: "
                                    f"{', '.join(CHOICES['variant'])}")
        return names
