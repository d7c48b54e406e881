"""Names and order of the evaluation metrics (no torch here: the CLI's listings import it cheaply)."""

METRIC_ORDER = ("A_orig", "A_SA", "A_IA", "A_IA_target", "A_PGD", "A_AA")
METRIC_LABELS = {"A_orig": "A_orig", "A_SA": "A_SA", "A_IA": "A_IA", "A_IA_target": "A_IA→target",
                 "A_PGD": "A_PGD", "A_AA": "A_AA"}
