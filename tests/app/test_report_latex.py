"""LaTeX export (amltui/app/results/report.py): single runs without ±, the paired table, caption, label,
booktabs note."""

from __future__ import annotations

import pytest

from amltui.app.results.report import aggregate, render
from tests.helpers import RUNS, rec

SINGLE = [rec("b0", "baseline", 0, 91.0, 80.0), rec("m0", "ml_sa", 0, 93.5, 84.0)]


def test_single_runs_render_their_value_alone_with_a_note() -> None:
    tex = render(aggregate(SINGLE), "latex")
    lines = tex.splitlines()
    assert lines[0] == "% Needs \\usepackage{booktabs} in the preamble (\\toprule, \\midrule, \\bottomrule)."
    se = "\\begin{{tabular}}[t]{{@{{}}c@{{}}}}${}$ (1)\\\\{{\\scriptsize SE {}}}\\end{{tabular}}".format
    assert f"baseline & {se('91.00', '0.90')} & {se('80.00', '1.26')} & {se('70.00', '1.45')} \\\\" in lines
    assert "\\pm --" not in tex and "$\\pm$ --" not in tex
    assert lines[5] == ("\\caption{Accuracy (\\%) on the test split: mean $\\pm$ sample std over seeds (seeds in "
                        "parentheses, one run per seed; SE below it: the binomial standard error "
                        "$100\\sqrt{p(1-p)/m}$ of an accuracy $p$ on $m$ test images, which averaging seeds does not "
                        "reduce); a value without "
                        "$\\pm$ is a single run (n=1): no spread measured. All rows: dataset mnist, setting quick.}")
    assert lines[6] == "\\label{tab:amltui-results}"


def test_the_paired_differences_table_is_there_as_in_markdown() -> None:
    tex = render(aggregate(SINGLE), "latex")
    assert "\\label{tab:amltui-paired}" in tex and tex.count("\\begin{table}[t]") == 2
    assert "ml\\_sa & $+2.50$ (1) & $+4.00$ (1) & $+4.00$ (1) \\\\" in tex.splitlines()
    several = render(aggregate(RUNS), "latex").splitlines()
    stacked = "\\begin{{tabular}}[t]{{@{{}}c@{{}}}}${}$\\\\{{\\scriptsize $\\pm {}$ ({})}}{}\\end{{tabular}}".format
    assert (f"ml\\_sa & $+0.50$ (2) & {stacked('+2.50', '0.71', 2, '')} & {stacked('+2.50', '0.71', 2, '')} \\\\"
            in several)
    def se(x: str) -> str:
        return "\\\\{\\scriptsize SE " + x + "}"
    assert (f"baseline & {stacked('98.00', '1.00', 3, se('0.44'))} & {stacked('91.00', '1.00', 3, se('0.90'))} & "
            f"{stacked('81.00', '1.00', 3, se('1.24'))} \\\\" in several)
    caption = next(line for line in several if line.startswith("\\caption{Paired"))
    assert caption.endswith("(n=1, or the same difference on every seed). All rows: dataset mnist, setting quick.}")
    head = several[several.index("\\label{tab:amltui-paired}") + 3]
    assert head == "Variant & $\\Delta$A\\_orig & $\\Delta$A\\_SA & $\\Delta$A\\_PGD \\\\"


def test_a_row_without_baseline_says_why_and_no_comparison_means_no_paired_table() -> None:
    alone = render(aggregate([rec("m0", "ml_sa", 0, 93.5, 84.0)]), "latex")
    assert "no baseline run of the same setting" in alone and "tab:amltui-paired" in alone
    baselines = render(aggregate([rec("b0", "baseline", 0, 91.0, 80.0)]), "latex")
    assert "tab:amltui-paired" not in baselines and baselines.count("\\begin{table}") == 1
    notes = baselines.split("\\begin{minipage}{\\linewidth}\\footnotesize\\raggedright")[1]
    assert "Every column is measured on 1000 test images per run.\\par" in notes  # rendered, not % comments
    assert "\n% " not in baselines


def _checked(run_id: str, variant: str, seed: int, **kw) -> dict:
    """A run of a one-setting Table 1 (every metric present); ``flagged`` adds a failed sanity check."""
    r = rec(run_id, variant, seed, 98.5 + seed / 10, 90.0 + seed, a_ia=80.0 + seed, **kw)
    r["metrics"].update({"A_IA_target": 12.34 + seed, "A_AA": 77.7 + seed})
    r["metrics_n"] = {m: 1000 for m in r["metrics"]}
    r["config_diff"] = {"epochs": 3, "test_subset": 300, "train_subset": 1000}
    return r


FAILED_CHECK = {"summary": "checks: 4/5 passed; FAILED check_black_box (…)", "n": 100, "results": [
    {"flag": "check_black_box", "label": "(c) black-box ≤ white-box", "passed": False, "numbers": {},
     "message": "Square 5.00% vs best white-box (pgd) 9.00%: the black-box attack is stronger"}]}


def _table1() -> list[dict]:
    runs = [_checked(f"{v}-s{s}", v, s) for v in ("baseline", "ml_sa", "ml_sa_ia") for s in range(3)]
    runs[0].update(flags=["check_black_box"], checks=FAILED_CHECK)
    return runs


def test_a_failed_sanity_check_footnote_says_its_rule_and_reason_rendered() -> None:
    rows = aggregate(_table1())
    md = render(rows, "md")
    note = next(line for line in md.splitlines() if line.startswith("⚠"))
    assert "rule: ?" not in md and not note.rstrip().endswith(":")
    assert "rule: (c) the black-box Square attack is not stronger than white-box" in note
    assert "here: Square 5.00% vs best white-box (pgd) 9.00%: the black-box attack is stronger" in note
    tex = render(rows, "latex")
    notes = tex.split("\\begin{minipage}")[1].split("\\end{minipage}")[0]  # rendered under the table
    assert "$^\\ddagger$ baseline" in notes and "rule: (c) the black-box Square attack" in notes
    assert "\\par{" not in tex and "\n% " not in tex


def test_every_mark_in_a_rendered_table_is_explained_there() -> None:
    runs = _table1() + [dict(_checked("c-s0", "baseline", 0), dataset="cifar10", id="c-s0")]
    tex = render(aggregate(runs), "latex")
    for mark in ("$^\\dagger$", "$^\\ddagger$"):
        table, notes = tex.split("\\begin{minipage}")[0], tex.split("\\begin{minipage}")[1]
        assert mark in table and f"{mark} " in notes.split("\\end{minipage}")[0]
    md = render(aggregate(runs), "md")
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert any("†" in line for line in table) and any(line.startswith("† ") for line in md.splitlines())
    assert any("⚠" in line for line in table) and any(line.startswith("⚠ ") for line in md.splitlines())


@pytest.mark.slow
def test_a_one_setting_table1_compiles_within_the_textwidth_of_an_article(tmp_path) -> None:
    import re
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base)")
    tex = render(aggregate(_table1()), "latex")
    lines = tex.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("\\begin{tabular}{"))
    tabular = "\n".join(lines[start:lines.index("\\end{tabular}", start) + 1])
    (tmp_path / "table.tex").write_text(tex, encoding="utf-8")
    (tmp_path / "doc.tex").write_text("\n".join([
        "\\documentclass{article}",
        # booktabs' rules add no width; the bare install (texlive-latex-base) lacks the package
        "\\IfFileExists{booktabs.sty}{\\usepackage{booktabs}}{\\newcommand{\\toprule}{\\hline}"
        "\\newcommand{\\midrule}{\\hline}\\newcommand{\\bottomrule}{\\hline}}",
        "\\newsavebox{\\tbox}", "\\begin{document}",
        "{\\small\\setlength{\\tabcolsep}{4pt}\\sbox{\\tbox}{" + tabular + "}",  # as inside the float
        "\\typeout{TABLEWIDTH=\\the\\wd\\tbox}}", "\\typeout{TEXTWIDTH=\\the\\textwidth}",
        "\\input{table.tex}", "\\end{document}"]), encoding="utf-8")
    done = subprocess.run(["pdflatex", "-halt-on-error", "-interaction=nonstopmode", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert done.returncode == 0, log[-3000:]
    width = float(re.search(r"TABLEWIDTH=([\d.]+)pt", log).group(1))
    textwidth = float(re.search(r"TEXTWIDTH=([\d.]+)pt", log).group(1))
    assert 100 < width <= textwidth and "Overfull \\hbox" not in log


@pytest.mark.slow
def test_the_export_compiles_with_pdflatex(tmp_path) -> None:
    """The tables, captions (√ of the standard error included) and notes are valid LaTeX."""
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base)")
    body = render(aggregate(RUNS), "latex")
    doc = tmp_path / "t.tex"
    # booktabs' three rules as plain \\hline where the bare TeX Live lacks booktabs.sty: the rules are not what is
    # tested here
    rules = ("\\IfFileExists{booktabs.sty}{\\usepackage{booktabs}}{\\newcommand{\\toprule}{\\hline}"
             "\\newcommand{\\midrule}{\\hline}\\newcommand{\\bottomrule}{\\hline}}\n")
    doc.write_text("\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n" + rules + "\\begin{document}\n"
                   + body + "\\end{document}\n", encoding="utf-8")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 0
