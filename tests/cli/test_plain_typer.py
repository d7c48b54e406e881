"""The command line is plain Typer (issue 25): every command declares its parameters, nothing rewrites a
signature or swaps a Click class at runtime, nothing imports Typer's or Click's private modules; and `--help`
still reads as it did (plain argument names, one value's type for repeatable options, Enum choices shown)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
from typer.core import TyperArgument, TyperOption
from typer.main import get_command
from typer.testing import CliRunner

from amltui.cli import app
from amltui.cli.help_text import Command, Group

CLI = Path(__file__).resolve().parents[2] / "amltui" / "cli"
runner = CliRunner()


# ---- source rules (AST) -----------------------------------------------------------------------------------
def private_imports(tree: ast.AST) -> list[str]:
    """Typer/Click modules with a private part (`typer._click`, `click._compat`) imported or reached."""
    found = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found += [n for n in names if n.split(".")[0] in ("typer", "click")
                  and any(part.startswith("_") for part in n.split("."))]
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("typer", "click"):
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in ("typer", "click") and node.attr.startswith("_")):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def rewiring(tree: ast.AST) -> list[str]:
    """Signature rewriting and class swapping: `with_options`, `**options` parameters, assignments to
    `__signature__` or `__class__`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name == "with_options":
                found.append(f"def {node.name}")
            if node.args.kwarg is not None:
                found.append(f"{node.name}(**{node.args.kwarg.arg})")
        if isinstance(node, ast.Name) and node.id == "with_options":
            found.append("with_options")
        if isinstance(node, ast.Attribute) and node.attr == "with_options":
            found.append("….with_options")
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        found += [f"….{t.attr} =" for t in targets
                  if isinstance(t, ast.Attribute) and t.attr in ("__signature__", "__class__")]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr"
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in ("__signature__", "__class__")):
            found.append(f"setattr(…, {node.args[1].value!r})")
    return found


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_cli_modules_use_no_private_api_and_rewire_nothing(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert private_imports(tree) == [], path
    assert rewiring(tree) == [], path


def test_the_rules_catch_what_they_forbid() -> None:
    """The scanners are not vacuous: each forbidden form of the old wiring is found."""
    old = '''
from typer._click.globals import get_current_context
import typer
ctx = typer._click.get_current_context()
@o.with_options(o.CONFIG_OPTIONS)
def run(variants: str = "x", **options: object) -> None: ...
def tidy(param):
    param.__class__ = _UsageArgument
command.__signature__ = inspect.Signature([])
'''
    tree = ast.parse(old)
    assert sorted(private_imports(tree)) == ["typer._click", "typer._click.globals"]
    assert sorted(rewiring(tree)) == ["run(**options)", "….__class__ =", "….__signature__ =", "….with_options"]


# ---- the commands as Typer builds them ----------------------------------------------------------------------
def commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))


ROOT = get_command(app)
ALL = list(commands(ROOT))


def test_every_command_declares_its_parameters() -> None:
    """Each callback's own signature is what Typer reads: no **kwargs, no replaced __signature__; every option
    and argument of the command is a parameter of its function."""
    for path, command in ALL:
        if command.callback is None:
            continue
        callback = inspect.unwrap(command.callback)
        assert "__signature__" not in vars(callback), path
        params = inspect.signature(callback).parameters
        assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in params.values()), path
        assert {p.name for p in command.params} - {"help"} <= set(params), path


def test_commands_use_the_declared_help_classes_and_typers_own_parameter_classes() -> None:
    """Help is shaped by classes given with cls= (Command, Group), never by swapping a parameter's class."""
    assert isinstance(ROOT, Group)
    for path, command in ALL:
        assert isinstance(command, Group if hasattr(command, "commands") else Command), path
        invoke(*path, "--help")  # help is drawn first: a swap made while drawing it would show below
        for param in command.params:
            assert type(param) in (TyperArgument, TyperOption), (path, param.name, type(param))


def test_every_argument_has_an_upper_case_metavar() -> None:
    for path, command in ALL:
        for param in command.params:
            if param.param_type_name == "argument":
                assert param.metavar and param.metavar == param.metavar.upper(), (path, param.name)


def invoke(*args: str) -> str:
    out = runner.invoke(app, [*args], terminal_width=100, env={"COLUMNS": "100"})
    assert out.exit_code == 0, out.output
    return out.output


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=" ".join)
def test_help_names_arguments_plainly_and_shows_no_python_types(path: tuple[str, ...]) -> None:
    text = invoke(*path, "--help")
    usage = text.splitlines()[0]
    assert "{" not in usage and "<" not in usage, usage
    assert "<list[" not in text and not re.search(r"^  [A-Z.]+ <str>", text, re.M), text


def test_help_keeps_choices_groups_and_plain_names() -> None:
    run = invoke("run", "--help")
    assert "--preset <paper|quick|authors>" in run and "--executor <local|slurm>" in run
    assert "--set <str>" in run and "--grid <str>" in run
    # the config options, then the dispatch options (Slurm's last), then --runs-dir, as before issue 25
    order = [run.index(f"  {name} ") for name in ("--wide", "--dataset", "--set", "--executor", "--partition",
                                                  "--time", "--gpus-per-node", "--runs-dir")]
    assert order == sorted(order), run
    assert "Usage: amltui rm [OPTIONS] [RUN...]" in invoke("rm", "--help")
    assert "Usage: amltui tag [OPTIONS] RUN... TAG" in invoke("tag", "--help")
    assert "Usage: amltui cancel [OPTIONS] [RUNS...]" in invoke("cancel", "--help")
    assert "Usage: amltui note [OPTIONS] RUN TEXT" in invoke("note", "--help")
    generate = invoke("invariance", "generate", "--help")
    assert "--mode <exact|fast>" in generate and "[default: mnist-sample]" in generate
