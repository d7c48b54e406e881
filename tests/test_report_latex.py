"""LaTeX export (amltui/app/report.py): single runs without ±, the paired table, caption, label, booktabs note."""

from __future__ import annotations

from amltui.app.report import aggregate, render
from tests.test_report import RUNS, rec

SINGLE = [rec("b0", "baseline", 0, 91.0, 80.0), rec("m0", "ml_sa", 0, 93.5, 84.0)]


def test_single_runs_render_their_value_alone_with_a_note() -> None:
    tex = render(aggregate(SINGLE), "latex")
    lines = tex.splitlines()
    assert lines[0] == "% Needs \\usepackage{booktabs} in the preamble (\\toprule, \\midrule, \\bottomrule)."
    assert "baseline & mnist & quick & $91.00$ (1; 0.90) & $80.00$ (1; 1.26) & $70.00$ (1; 1.45) \\\\" in lines
    assert "\\pm --" not in tex and "$\\pm$ --" not in tex
    assert lines[3] == ("\\caption{Accuracy (\\%) on the test split: mean $\\pm$ sample std over seeds (seeds in "
                        "parentheses, one run per seed; then the binomial standard error $100\\sqrt{p(1-p)/m}$ of an "
                        "accuracy $p$ on $m$ test images, which averaging seeds does not reduce); a value without "
                        "$\\pm$ is a single run (n=1): no spread measured.}")
    assert lines[4] == "\\label{tab:amltui-results}"


def test_the_paired_differences_table_is_there_as_in_markdown() -> None:
    tex = render(aggregate(SINGLE), "latex")
    assert "\\label{tab:amltui-paired}" in tex and tex.count("\\begin{table}[t]") == 2
    assert "ml\\_sa & mnist & quick & $+2.50$ (1) & $+4.00$ (1) & $+4.00$ (1) \\\\" in tex.splitlines()
    several = render(aggregate(RUNS), "latex").splitlines()
    assert "ml\\_sa & mnist & quick & $+0.50$ (2) & $+2.50 \\pm 0.71$ (2) & $+2.50 \\pm 0.71$ (2) \\\\" in several
    assert ("baseline & mnist & quick & $98.00 \\pm 1.00$ (3; 0.44) & $91.00 \\pm 1.00$ (3; 0.90) & "
            "$81.00 \\pm 1.00$ (3; 1.24) \\\\") in several
    caption = next(line for line in several if line.startswith("\\caption{Paired"))
    assert caption.endswith("(n=1, or the same difference on every seed).}")
    head = several[several.index("\\label{tab:amltui-paired}") + 3]
    assert head == "Variant & Dataset & Setting & $\\Delta$A\\_orig & $\\Delta$A\\_SA & $\\Delta$A\\_PGD \\\\"


def test_a_row_without_baseline_says_why_and_no_comparison_means_no_paired_table() -> None:
    alone = render(aggregate([rec("m0", "ml_sa", 0, 93.5, 84.0)]), "latex")
    assert "no baseline run of the same setting" in alone and "tab:amltui-paired" in alone
    baselines = render(aggregate([rec("b0", "baseline", 0, 91.0, 80.0)]), "latex")
    assert "tab:amltui-paired" not in baselines and baselines.count("\\begin{table}") == 1
    assert baselines.splitlines()[-1].startswith("% ")  # the notes follow the table as comments


def test_the_export_compiles_with_pdflatex(tmp_path) -> None:
    """The tables, captions (√ of the standard error included) and notes are valid LaTeX."""
    import shutil
    import subprocess

    import pytest

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    body = render(aggregate(RUNS), "latex")
    doc = tmp_path / "t.tex"
    # booktabs' three rules as plain \\hline: this machine's TeX Live lacks booktabs.sty, and the rules are not
    # what is tested here
    rules = "".join(f"\\newcommand{{\\{r}}}{{\\hline}}\n" for r in ("toprule", "midrule", "bottomrule"))
    doc.write_text("\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n" + rules + "\\begin{document}\n"
                   + body + "\\end{document}\n", encoding="utf-8")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 0
