"""A run's PCA of penultimate embeddings (the paper's Figure 1): pca.png and pca.json next to the run (torch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from amltui.app.fsutil import atomic_write_json
from amltui.app.png_figures import pca_figure
from amltui.app.runs import load_run_data, load_run_model
from amltui.app.store import Store
from core.evaluate import embeddings, pca_2d


def write_pca(store: Store, run_id: str, *, n: int = 2000, device: str | None = None,
              out: Path | None = None, stage: Callable[[str], None] | None = None) -> Path:
    """<run>/pca.png and <run>/pca.json (2-D points for terminal plots) from the run's checkpoint.

    ``stage`` hears each step as it starts (the dashboard's PCA tab shows them)."""
    say = stage or (lambda _text: None)
    say("loading the run's checkpoint and data")
    run = load_run_model(store, run_id, device)
    rd, config = run.rd, run.config
    data = load_run_data(config).test
    say(f"embedding {min(n, len(data))} test images, natural and FGSM-perturbed (ε={config.eps_s})")
    emb = embeddings(run.model, data, config.eps_s, n=n)
    say("projecting (PCA) and drawing pca.png")
    nat, pert, explained = pca_2d(emb["natural"], emb["perturbed"])
    title = f"{run_id}: {config.variant}, seed {config.seed}, {config.dataset}, FGSM ε={config.eps_s}"
    path = pca_figure(nat, pert, emb["labels"], explained, title, out or rd.path / "pca.png")
    atomic_write_json(rd.path / "pca.json", {
        "explained": explained.tolist(), "labels": emb["labels"].tolist(),
        "natural": [[round(float(a), 4), round(float(b), 4)] for a, b in nat.tolist()],
        "perturbed": [[round(float(a), 4), round(float(b), 4)] for a, b in pert.tolist()],
    })
    return path
