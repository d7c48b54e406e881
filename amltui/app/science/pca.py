"""A run's PCA of penultimate embeddings (the paper's Figure 1): pca.png and pca.json next to the run (torch).

``python -P -m amltui.app.science.pca --runs-dir DIR RUN_ID`` does it in a process of its own: the dashboard starts it
so that torch (hundreds of MB) is never loaded into the dashboard. It prints one ``STAGE_PREFIX`` line per step,
then ``DONE_PREFIX`` and the PNG's path, or ``ERROR_PREFIX`` and the reason (exit status 1). Importing this
module loads no torch (tests/app/test_torch_boundary.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from amltui.app.fsutil import atomic_write_json
from amltui.app.runs.store import Store
from amltui.app.science.loading import load_run_data, load_run_model


def write_pca(store: Store, run_id: str, *, n: int = 2000, device: str | None = None,
              out: Path | None = None, stage: Callable[[str], None] | None = None) -> Path:
    """<run>/pca.png and <run>/pca.json (2-D points for terminal plots) from the run's checkpoint.

    ``stage`` hears each step as it starts (the dashboard's PCA tab shows them)."""
    # torch and matplotlib here, not at the top: the dashboard imports this module for its prefixes only
    from amltui.app.results.png_figures import pca_figure
    from core.evaluate import embeddings, pca_2d

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


STAGE_PREFIX = "stage: "
DONE_PREFIX = "done: "
ERROR_PREFIX = "error: "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -P -m amltui.app.science.pca", description=__doc__)
    parser.add_argument("run_id")
    parser.add_argument("--runs-dir", required=True, type=Path)
    parser.add_argument("--n", type=int, default=2000, help="test images embedded")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    def stage(text: str) -> None:
        print(STAGE_PREFIX + text, flush=True)

    try:
        path = write_pca(Store(args.runs_dir), args.run_id, n=args.n, device=args.device, stage=stage)
    except Exception as exc:  # a missing checkpoint, unreadable data, …: one line for the dashboard to show
        print(f"{ERROR_PREFIX}{type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
        return 1
    print(DONE_PREFIX + str(path), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
