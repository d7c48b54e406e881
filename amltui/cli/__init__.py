"""The amltui command line (Typer): one module per group of commands."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from amltui import __version__
from amltui.cli import gpus, invariance, lifecycle, maintenance, reproduce, results
from amltui.cli.common import choice_error, console, describe_os_error, fail
from amltui.cli.help_text import Command, Group
from amltui.cli.options import RunsDir, Variant
from core.config import key_reference


class _Commands(Group):
    """The command group; a file-system failure no command foresaw (disk full, read-only folder) becomes a
    one-line error instead of a traceback, and a refused option value (e.g. not one of an Enum's choices) reads
    as every other user error: ``error: …``, exit code 2."""

    def invoke(self, ctx: Any) -> Any:  # ctx: Typer's vendored click Context
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:
            option = "/".join(getattr(exc.param, "opts", None) or [])
            fail(choice_error(exc.message, option) if option else exc.format_message())
        except OSError as exc:
            fail(describe_os_error(exc), code=1)


app = typer.Typer(
    name="amltui",
    cls=_Commands,
    help="Adversarial metric learning experiments: FGSM training with angular triplet regularizers over "
    "sensitivity and invariance examples (Ovalle, Czyzycki, Hsieh).",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def version_callback(value: bool) -> None:
    if value:
        console.print(f"amltui {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                          help="Show the version and exit.")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """amltui: run, watch and report adversarial metric learning experiments."""
    if runs_dir is not None:  # `amltui --runs-dir D ls` = `amltui ls --runs-dir D` (an option after the command wins)
        ctx.default_map = runs_dir_defaults(ctx.command, str(runs_dir))


def runs_dir_defaults(group: Any, runs_dir: str) -> dict[str, Any]:
    """Click's default_map giving every command (and sub-command) that has --runs-dir this value."""
    defaults: dict[str, Any] = {}
    for name, command in (getattr(group, "commands", None) or {}).items():
        own = {"runs_dir": runs_dir} if any(p.name == "runs_dir" for p in command.params) else {}
        defaults[name] = own | runs_dir_defaults(command, runs_dir)
    return defaults


# One registration style: each command module adds its commands (and sub-groups) to the app.
for module in (lifecycle, reproduce, results, invariance, gpus, maintenance):
    module.register(app)


@app.command("config-keys", cls=Command)
def config_keys(
    variant: Annotated[Variant, typer.Option(help="Variant whose loss weights the per-preset defaults show.")]
    = Variant.ml_sa,
) -> None:
    """List every config key of --set with its type, valid values, description and default per preset."""
    console.print(escape(key_reference(variant.value)), highlight=False, soft_wrap=True)
