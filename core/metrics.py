"""The one home of the evaluation metrics' names, order and labels (no torch: the CLI's listings import it cheaply).

Front ends take their column titles from here (``METRIC_LABELS`` in tables, ``METRIC_SHORT_LABELS`` where columns
are narrow) instead of spelling the metrics again. A new metric: add it here, then compute it in core/evaluate.py.
"""

METRIC_ORDER = ("A_orig", "A_SA", "A_IA", "A_IA_target", "A_PGD", "A_AA")
METRIC_LABELS = {"A_orig": "A_orig", "A_SA": "A_SA", "A_IA": "A_IA", "A_IA_target": "A_IA→target",
                 "A_PGD": "A_PGD", "A_AA": "A_AA"}
METRIC_SHORT_LABELS = {**METRIC_LABELS, "A_IA_target": "→tgt"}  # narrow tables (`amltui ls`, `amltui run`)
# The most telling first, where only a few fit (the dashboard at 80 columns): clean, then the honest robustness
# number (PGD), then the training attack's (FGSM) and the invariance scores.
HEADLINE_ORDER = ("A_orig", "A_PGD", "A_SA", "A_IA", "A_IA_target", "A_AA")
