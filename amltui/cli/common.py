"""Shared pieces of the command line: consoles, errors, the store and run lookup."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from amltui.app import service
from amltui.app.errors import UserError
from amltui.app.records import DAMAGED, unindexed_folders
from amltui.app.safetext import markup_safe, printable
from amltui.app.status_style import status_style
from amltui.app.store import REBUILD_HINT, Store, StoreError
from core.config import ConfigError
from core.metrics import METRIC_LABELS, METRIC_ORDER

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error the user can act on (no traceback) and exit. The message is shown verbatim (it may quote
    user input or stored text, so Rich markup in it is escaped, never applied)."""
    # soft_wrap: one line however long (paths), so it can be grepped and copied; the terminal wraps it.
    err.print(f"[bold red]error:[/] {markup_safe(message, lines=True)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


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


# Commands that may make the runs folder; any other refuses a folder that does not exist (a typo in --runs-dir or
# $AMLTUI_RUNS_DIR must not leave an empty folder behind and report "no runs").
CREATES_RUNS_DIR = ("run", "reproduce", "invariance generate", "invariance show")


def open_store(runs_dir: Path | None) -> Store:
    from amltui.app.runs import default_runs_dir

    folder = Path(runs_dir) if runs_dir else default_runs_dir()
    if not folder.exists() and _command() not in CREATES_RUNS_DIR:
        where = ("--runs-dir" if runs_dir else "$AMLTUI_RUNS_DIR" if os.environ.get("AMLTUI_RUNS_DIR")
                 else "the default: ./runs in the current folder")
        fail(f"the runs folder {folder} does not exist ({where}); check the path, or start a run with "
             "`amltui run`, which creates it")
    with user_errors():
        return service.open_store(runs_dir)


def _command() -> str:
    """The running command without the program name (`invariance show`), or "" outside the command line."""
    try:  # Typer ≥ 0.20 vendors click
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - older Typer on click
        from click import get_current_context
    ctx = get_current_context(silent=True)
    return " ".join(ctx.command_path.split()[1:]) if ctx is not None else ""


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


def parse_list(text: str, what: str, convert: type = str) -> list:
    """'a,b' → ['a', 'b'] for names; seeds (convert=int) also take ranges: '0-2,5' (as the dashboard)."""
    with user_errors():
        return service.parse_seeds(text) if convert is int else service.parse_names(text, what)
