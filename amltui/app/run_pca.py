"""A run's PCA of penultimate embeddings (the paper's Figure 1): pca.png and pca.json next to the run (torch)."""

from __future__ import annotations

from pathlib import Path

from amltui.app.fsutil import atomic_write_json
from amltui.app.png_figures import pca_figure
from amltui.app.runs import load_run_data, load_run_model
from amltui.app.store import Store
from core.evaluate import embeddings, pca_2d


def write_pca(store: Store, run_id: str, *, n: int = 2000, device: str | None = None,
              out: Path | None = None) -> Path:
    """<run>/pca.png and <run>/pca.json (2-D points for terminal plots) from the run's checkpoint."""
    run = load_run_model(store, run_id, device)
    rd, config = run.rd, run.config
    emb = embeddings(run.model, load_run_data(config).test, config.eps_s, n=n)
    nat, pert, explained = pca_2d(emb["natural"], emb["perturbed"])
    title = f"{run_id}: {config.variant}, seed {config.seed}, {config.dataset}, FGSM ε={config.eps_s}"
    path = pca_figure(nat, pert, emb["labels"], explained, title, out or rd.path / "pca.png")
    atomic_write_json(rd.path / "pca.json", {
        "explained": explained.tolist(), "labels": emb["labels"].tolist(),
        "natural": [[round(float(a), 4), round(float(b), 4)] for a, b in nat.tolist()],
        "perturbed": [[round(float(a), 4), round(float(b), 4)] for a, b in pert.tolist()],
    })
    return path
