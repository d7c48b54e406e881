"""LaTeX export (amltui/app/report.py): single runs without ±, the paired table, caption, label, booktabs note."""

from __future__ import annotations

from amltui.app.report import aggregate, render
from tests.test_report import RUNS, rec

SINGLE = [rec("b0", "baseline", 0, 91.0, 80.0), rec("m0", "ml_sa", 0, 93.5, 84.0)]


def test_single_runs_render_their_value_alone_with_a_note() -> None:
    tex = render(aggregate(SINGLE), "latex")
    lines = tex.splitlines()
    assert lines[0] == "% Needs \\usepackage{booktabs} in the preamble (\\toprule, \\midrule, \\bottomrule)."
    assert "baseline & mnist & quick & $91.00$ (1) & $80.00$ (1) & $70.00$ (1) \\\\" in lines
    assert "\\pm --" not in tex and "$\\pm$ --" not in tex
    assert lines[3] == ("\\caption{Accuracy (\\%) on the test split: mean $\\pm$ sample std over seeds (seeds in "
                        "parentheses, one run per seed); a value without $\\pm$ is a single run (n=1): no spread "
                        "measured.}")
    assert lines[4] == "\\label{tab:amltui-results}"


def test_the_paired_differences_table_is_there_as_in_markdown() -> None:
    tex = render(aggregate(SINGLE), "latex")
    assert "\\label{tab:amltui-paired}" in tex and tex.count("\\begin{table}[t]") == 2
    assert "ml\\_sa & mnist & quick & $+2.50$ (1) & $+4.00$ (1) & $+4.00$ (1) \\\\" in tex.splitlines()
    several = render(aggregate(RUNS), "latex").splitlines()
    assert "ml\\_sa & mnist & quick & $+0.50$ (2) & $+2.50 \\pm 0.71$ (2) & $+2.50 \\pm 0.71$ (2) \\\\" in several
    assert "baseline & mnist & quick & $98.00 \\pm 1.00$ (3) & $91.00 \\pm 1.00$ (3) & $81.00 \\pm 1.00$ (3) \\\\" \
        in several
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
