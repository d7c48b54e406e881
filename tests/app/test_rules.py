"""Rules that fail CI, not conventions: each fact has one home, and these AST checks keep it so.

Over every module of amltui/ and core/ (docstrings and comments excluded, the AST has no comments):
(a) a status string ("done", "running", … the Status values) is spelled only in amltui/app/runs/records.py
    (a field that is named like one, ``event["done"]``, is a field name: see field_names);
(b) a set or tuple of statuses, or a status → colour mapping, is built only in records.py or status_style.py;
(c) a metric label string (core/metrics.py's labels) is written only in core/metrics.py;
(d) torch is imported (at run time: not under ``if TYPE_CHECKING``) only where a model runs (TORCH_ALLOWED);
(e) the run index is written only in amltui/app/runs/store.py: nothing else calls Store's private writers or opens
    the index's storage, and Store has no public writer besides ``rebuild``.
An allowance names one file and says why; each is a fact still copied that another change must remove.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from amltui.app.runs.records import Status
from amltui.app.runs.store import Store
from core.metrics import METRIC_LABELS, METRIC_SHORT_LABELS

ROOT = Path(__file__).resolve().parents[2]
STATUSES = frozenset(s.value for s in Status)
# A label that is also the metric's own name (A_orig) is a key, not a copy: only labels that differ count.
LABELS = frozenset(label for labels in (METRIC_LABELS, METRIC_SHORT_LABELS) for key, label in labels.items()
                   if label != key)

RECORDS = "amltui/app/runs/records.py"
STATUS_STYLE = "amltui/app/runs/status_style.py"
METRICS = "core/metrics.py"
STORE = "amltui/app/runs/store.py"
# Where torch may be imported: the science, and the part of the application core that runs a model
# (docs/architecture.md, "The layers"; tests/app/test_torch_boundary.py checks that the rest never loads it).
TORCH_ALLOWED = ("core/", "amltui/app/science/")
TORCH_MODULES = ("torch", "torchattacks")
# Store's writers: private, called only inside store.py (update_record, create_records, delete_record, …).
RAW_WRITERS = frozenset({"_add", "_add_many", "_put", "_put_many", "_update", "_remove"})
STORE_PUBLIC = frozenset({"lock", "get", "all", "find", "schema_version", "rebuild"})  # reads, the lock, rebuild

# Narrow allowances: files another change rewrites (issue 25, "One runs view"); each line says what is copied.
ALLOWED: dict[str, dict[str, str]] = {}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def sources() -> list[Path]:
    return sorted(p for top in ("amltui", "core") for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string nodes that are docstrings (a module's, class's or function's first statement)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def strings(tree: ast.AST) -> Iterator[ast.Constant]:
    """Every string literal that is not a docstring (parts of f-strings included)."""
    skip = docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node


def is_status(node: ast.AST) -> bool:
    """A status literal ("done") or a Status member (Status.DONE)."""
    if isinstance(node, ast.Constant):
        return node.value in STATUSES
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Status"


def field_names(tree: ast.AST) -> set[int]:
    """The ids of strings that name a field: a dict display's key, a subscript, ``.get``'s key. A field may be
    named like a status (a progress event's ``done`` count, the record's ``damaged`` reason); a status value
    (``{"status": "done"}``, ``== "done"``) is never in these places."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            found |= {id(k) for k in node.keys if k is not None}
        elif isinstance(node, ast.Subscript):
            found.add(id(node.slice))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args \
                and node.func.attr in ("get", "pop", "setdefault"):
            found.add(id(node.args[0]))
    return found


def status_literals(path: Path, tree: ast.AST) -> list[Finding]:
    keys = field_names(tree)
    return [Finding(rel(path), n.lineno, f"status literal {n.value!r} (use records.Status)")
            for n in strings(tree) if n.value in STATUSES and id(n) not in keys]


def status_collections(path: Path, tree: ast.AST) -> list[Finding]:
    """Sets, tuples and lists of two or more statuses, and dicts keyed by statuses (colours, ranks)."""
    unpacked = {id(n.value) for n in ast.walk(tree)
                if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Tuple)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Set | ast.Tuple | ast.List) and id(node) not in unpacked:  # not `A, B = X, Y`
            if sum(is_status(e) for e in node.elts) >= 2 and not isinstance(getattr(node, "ctx", None), ast.Store):
                found.append(Finding(rel(path), node.lineno, "a set of statuses (define it in records.py)"))
        elif isinstance(node, ast.Dict) and sum(k is not None and is_status(k) for k in node.keys) >= 2:
            found.append(Finding(rel(path), node.lineno, "a mapping of statuses (status_style.py or records.py)"))
    return found


# A label spelled anew ("A_IA→t"): a metric name, an arrow and a suffix, as a whole string (a column title).
LABEL_LIKE = re.compile(r"Δ?A_[A-Za-z]+→\w*")


def metric_labels(path: Path, tree: ast.AST) -> list[Finding]:
    return [Finding(rel(path), n.lineno, f"metric label {n.value!r} (use core/metrics.py's METRIC_LABELS)")
            for n in strings(tree) if n.value in LABELS or LABEL_LIKE.fullmatch(n.value)]


def type_checking_blocks(tree: ast.AST) -> set[int]:
    """The ids of statements under ``if TYPE_CHECKING:`` (never run: they import for the type checker)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return found


def torch_imports(path: Path, tree: ast.AST) -> list[Finding]:
    skip = type_checking_blocks(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        for name in names:
            if name.split(".")[0] in TORCH_MODULES:
                found.append(Finding(rel(path), node.lineno, f"imports {name} (only in {', '.join(TORCH_ALLOWED)})"))
    return found


def index_writes(path: Path, tree: ast.AST) -> list[Finding]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in RAW_WRITERS and isinstance(node.ctx, ast.Load):
            found.append(Finding(rel(path), node.lineno, f"calls Store.{node.attr} (use update_record or a named "
                                                         "store function)"))
        if isinstance(node, ast.Name | ast.alias) and "AtomicJSONStorage" in (getattr(node, "id", None),
                                                                              getattr(node, "name", None)):
            found.append(Finding(rel(path), node.lineno, "writes the index's storage directly"))
    return found


RULES = {
    "a": (status_literals, {RECORDS}),
    "b": (status_collections, {RECORDS, STATUS_STYLE}),
    "c": (metric_labels, {METRICS}),
    "d": (torch_imports, set()),
    "e": (index_writes, {STORE}),
}


def home(rule: str, path: str) -> bool:
    if rule == "d":
        return path.startswith(TORCH_ALLOWED)
    return path in RULES[rule][1] or path in ALLOWED.get(rule, {})


def findings(rule: str, files: list[Path]) -> list[Finding]:
    check = RULES[rule][0]
    return [f for path in files if not home(rule, rel(path)) for f in check(path, parse(path))]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_fact_is_written_only_in_its_home(rule: str) -> None:
    found = findings(rule, sources())
    assert not found, f"rule ({rule}), see this file's docstring:\n" + "\n".join(map(str, found))


def test_store_has_no_public_writer() -> None:
    public = {name for name in vars(Store) if not name.startswith("_")}
    assert public == STORE_PUBLIC, f"Store's public names changed: {sorted(public ^ STORE_PUBLIC)}; a writer " \
                                   "must be private (store.py's named functions call it)"


def test_every_allowance_names_a_file_that_still_breaks_its_rule() -> None:
    """An allowance that is no longer needed is removed, so the list only shrinks."""
    for rule, files in ALLOWED.items():
        for path in files:
            target = ROOT / path
            if target.is_file():
                assert RULES[rule][0](target, parse(target)), f"rule ({rule}): {path} no longer needs its allowance"


# The rules must catch what they are meant to catch: each bad snippet below is found, each good one is not.
BAD = {
    "a": 'if record.get("status") in ("queued", Status.RUNNING):\n    pass\n',
    "b": "FINISHED = frozenset({Status.DONE, Status.FAILED})\n",
    "c": 'TITLES = ("A_IA→target", "A_IA→t")\n',
    "d": "def f():\n    import torch.nn\n",
    "e": "store._put(record)\n",
}
GOOD = {
    "a": '"""Runs that are done."""\nif record["status"] == Status.DONE:  # "done"\n    n = event["done"]\n',
    "b": "FINISHED = TERMINAL\nseen = {Status.DONE}\n",
    "c": 'TITLE = METRIC_LABELS["A_IA_target"]\n',
    "d": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n",
    "e": "update_record(store, run_id, fn)\n",
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_catches_its_case_and_passes_the_right_way(rule: str, tmp_path: Path) -> None:
    check = RULES[rule][0]
    bad, good = tmp_path / "bad.py", tmp_path / "good.py"
    bad.write_text(BAD[rule], encoding="utf-8")
    good.write_text(GOOD[rule], encoding="utf-8")
    assert check(bad, parse(bad)), f"rule ({rule}) missed: {BAD[rule]!r}"
    assert not check(good, parse(good)), f"rule ({rule}) flagged: {GOOD[rule]!r}"


# ---- (f) layers and (g) cycles over the import graph --------------------------------------------------------
# Bottom to top (docs/architecture.md, "The layers"): a module imports from its own layer or those below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("core",)),
    ("base", ("amltui", "amltui.__about__", "amltui.app", "amltui.app.errors", "amltui.app.safetext",
              "amltui.app.fsutil", "amltui.app.gpus", "amltui.app.preflight")),
    ("runs", ("amltui.app.runs",)),
    ("results", ("amltui.app.results",)),
    ("science", ("amltui.app.science",)),
    ("executors", ("amltui.app.executors",)),
    ("service", ("amltui.app.service",)),
    ("termplot", ("amltui.termplot",)),
    ("front ends", ("amltui.cli", "amltui.tui", "amltui.__main__")),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The index in LAYERS of a module: the longest prefix that names it (a package or the module itself)."""
    best = (-1, -1)
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[1]:
                best = (i, len(prefix))
    if best[0] < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (tests/app/test_rules.py)")
    return best[0]


def imported_modules(tree: ast.AST, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) for each import of one of ``known`` (``from a.b import c`` is a.b.c when that is a module)."""
    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    skip = type_checking_blocks(tree)  # never run: an import for the type checker is not a dependency
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            targets = [resolve(f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [resolve(a.name) for a in node.names]
        else:
            continue
        found += [(node.lineno, t) for t in targets if t]
    return found


def import_graph(files: list[Path]) -> dict[str, list[tuple[int, str]]]:
    names = {module_name(p): p for p in files}
    known = set(names)
    return {m: [(line, t) for line, t in imported_modules(parse(p), known) if t != m] for m, p in names.items()}


def upward_imports(graph: dict[str, list[tuple[int, str]]]) -> list[str]:
    return [f"{m}:{line}: imports {t} ({LAYERS[layer_of(t)][0]}, above {LAYERS[layer_of(m)][0]})"
            for m, edges in sorted(graph.items()) for line, t in edges if layer_of(t) > layer_of(m)]


def cycles(graph: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted({t for _, t in graph[root]})))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted({t for _, t in graph.get(nxt, [])}))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_every_module_is_in_a_layer() -> None:
    for path in sources():
        layer_of(module_name(path))


def test_layers_import_only_downward() -> None:
    found = upward_imports(import_graph(sources()))
    assert not found, "rule (f), a layer imports from above it:\n" + "\n".join(found)


def test_no_import_cycle_even_inside_functions() -> None:
    found = cycles(import_graph(sources()))
    assert not found, "rule (g), modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_graph_rules_catch_an_upward_import_and_a_cycle_in_a_function(tmp_path: Path) -> None:
    """A fake tree: runs → science inside a function (upward) and a ↔ b inside functions (a cycle)."""
    files = {"amltui/app/runs/a.py": "def f():\n    from amltui.app.runs import b\n",
             "amltui/app/runs/b.py": "def g():\n    from amltui.app.runs.a import f\n",
             "amltui/app/runs/c.py": "def h():\n    from amltui.app.science.x import run\n",
             "amltui/app/science/x.py": "from amltui.app.runs.c import h\n"}
    paths = [ROOT / name for name in files]
    graph = {module_name(p): [(line, t) for line, t in imported_modules(ast.parse(files[rel(p)]),
                                                                        {module_name(q) for q in paths})
                              if t != module_name(p)] for p in paths}
    assert upward_imports(graph) == ["amltui.app.runs.c:2: imports amltui.app.science.x (science, above runs)"]
    assert cycles(graph) == [["amltui.app.runs.a", "amltui.app.runs.b"], ["amltui.app.runs.c", "amltui.app.science.x"]]


# ---- (h) an import inside a function is for a heavy module only ---------------------------------------------
# Modules whose import costs seconds or hundreds of MB: the science (torch), the PNG figures (matplotlib) and the
# dashboard (Textual, from `amltui dashboard`). Importing anything else of amltui/ inside a function hides a
# dependency for no gain: it goes at the top of the module.
LAZY = ("amltui.app.science", "amltui.app.results.png_figures", "amltui.tui.dashboard")


def hidden_imports(path: Path, tree: ast.AST) -> list[Finding]:
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level \
                    and node.module.split(".")[0] == "amltui":
                targets = [f"{node.module}.{a.name}" for a in node.names]
                light = [t for t in targets if not t.startswith(LAZY)]
                if light and not node.module.startswith(LAZY):
                    found.append(Finding(rel(path), node.lineno, f"imports {node.module} inside a function (not "
                                                                 "heavy: import it at the top)"))
    return found


def test_only_heavy_modules_are_imported_inside_functions() -> None:
    found = [f for path in sources() for f in hidden_imports(path, parse(path))]
    assert not found, "rule (h):\n" + "\n".join(map(str, found))


def test_rule_h_catches_a_light_import_in_a_function_and_passes_a_heavy_one(tmp_path: Path) -> None:
    bad, good = tmp_path / "bad.py", tmp_path / "good.py"
    bad.write_text("def f():\n    from amltui.app.runs.folders import run_dir\n", encoding="utf-8")
    good.write_text("def f():\n    from amltui.app.science.pca import write_pca\n"
                    "    from amltui.app import science\n", encoding="utf-8")
    assert hidden_imports(bad, parse(bad)) and not hidden_imports(good, parse(good))
