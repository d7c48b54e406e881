"""Finding a dataset's four idx files and reading their headers, without torch.

core/data.py loads the files; amltui/app/preflight.py checks them (present, readable, sizes) before a run is
queued, in a CLI process that must not pay torch's import time. Both locate the files here, so they agree.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

from core.errors import DataNotFoundError

# Standard idx file stems; each may also be gzipped (".gz") or use the "name.idx3-ubyte" spelling.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# torchvision keeps the raw idx files in ROOT/<ClassName>/raw.
TORCHVISION_DIRS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
SAMPLE_DIR = Path(__file__).resolve().parent / "datasets" / "mnist_sample"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_SOURCES = {
    "mnist": "download them from an MNIST mirror (e.g. https://ossci-datasets.s3.amazonaws.com/mnist/)",
    "fashion-mnist": (f"on Debian `apt-get install dataset-fashion-mnist` puts them in {DEBIAN_FASHION_DIR}; "
                      "or download them from https://github.com/zalandoresearch/fashion-mnist"),
}


def default_cache_dir() -> Path:
    """$AMLTUI_DATA_DIR, else ~/.cache/amltui/data."""
    env = os.environ.get("AMLTUI_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "amltui" / "data"


def how_to_get(dataset: str | None) -> str:
    """Where the files of ``dataset`` come from (both sources when the dataset is not known)."""
    if dataset in _SOURCES:
        return _SOURCES[dataset]
    return "for MNIST " + _SOURCES["mnist"] + "; for Fashion-MNIST " + _SOURCES["fashion-mnist"]


def cache_fix(dataset: str | None) -> str:
    """The fix when the files were looked for in the download cache (no --data-dir given)."""
    return (f"pass --data-dir DIR with the four idx files ({how_to_get(dataset)}), "
            "or allow the download into the cache (network needed).")


def not_found_message(what: str, folder: Path, missing: Sequence[str], dataset: str | None, fix: str = "") -> str:
    """'<what>: <folder> lacks <files>.' then one Fix line: how to get them (``fix`` replaces the default)."""
    names = ", ".join(f"{m}[.gz]" for m in missing)
    lacks = f"all four idx files ({names})" if len(missing) == len(IDX_FILES) else names
    default = f"get them: {how_to_get(dataset)}; put the four files in {folder} (or in {folder}/raw)."
    return f"{what}: {folder} lacks {lacks}.\nFix: {fix or default}"


def candidate_names(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")  # e.g. train-images.idx3-ubyte, a common alternative spelling
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def _find_in(folder: Path) -> tuple[dict[str, Path], list[str]]:
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, stem in IDX_FILES.items():
        hit = next((folder / n for n in candidate_names(stem) if (folder / n).is_file()), None)
        if hit is None:
            missing.append(stem)
        else:
            found[key] = hit
    return found, missing


def find_idx_files(folder: Path, dataset: str | None = None) -> dict[str, Path]:
    """Locate the four idx files in `folder`, or in its torchvision-style `raw/` or `<Class>/raw/` subfolder.

    Returns a dict with keys train_images, train_labels, test_images, test_labels. `dataset` ("mnist" or
    "fashion-mnist") also enables torchvision's DIR/MNIST/raw or DIR/FashionMNIST/raw layout.
    Raises DataNotFoundError naming the folder, the missing files and how to get them.
    """
    folder = Path(folder).expanduser()
    label = dataset or "idx dataset"
    every = list(IDX_FILES.values())
    if not folder.is_dir():
        files = ", ".join(f"{m}[.gz]" for m in every)
        raise DataNotFoundError(f"{label}: no folder {folder}.\nFix: check the path (--data-dir); the folder must "
                                f"hold the four idx files {files}; to get them: {how_to_get(dataset)}.", folder, every)
    candidates = [folder, folder / "raw"]
    if dataset in TORCHVISION_DIRS:
        candidates.append(folder / TORCHVISION_DIRS[dataset] / "raw")
    best_missing = every
    for cand in candidates:
        if not cand.is_dir():
            continue
        found, missing = _find_in(cand)
        if not missing:
            return found
        best_missing = min(best_missing, missing, key=len)
    raise DataNotFoundError(not_found_message(label, folder, best_missing, dataset), folder, best_missing)


def read_idx_header(path: Path) -> tuple[int, ...]:
    """The dimensions an idx file declares (reads its header only; gzip or not); a plain file's size is checked
    against them. Raises ValueError naming the file when it is unreadable, garbled or truncated."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"  # decide by content, not by the file name
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as fh:
            head = fh.read(4)
            ndim = head[3] if len(head) == 4 else 0
            head += fh.read(4 * ndim)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: cannot read idx file ({err})") from err
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] != 0x08 or ndim == 0:
        raise ValueError(f"{path}: not a uint8 idx file (header starts 0x{head[:4].hex()}, expected 0x000008 then "
                         "the number of dimensions); replace it with an intact copy")
    if len(head) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated idx header ({len(head)} bytes, {4 + 4 * ndim} needed for {ndim} dims); "
                         "replace it with an intact copy")
    dims = tuple(int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = len(head) + math.prod(dims)
    # A plain file's size, or a gzip file's trailer (ISIZE: the uncompressed size mod 2**32), must match the header:
    # a cheap check that catches a truncated download without decompressing it.
    with open(path, "rb") as fh:
        if gzipped:
            fh.seek(-4, os.SEEK_END)
            actual = int.from_bytes(fh.read(4), "little")
        else:
            actual = os.fstat(fh.fileno()).st_size
    if actual != (expected % 2**32 if gzipped else expected):
        raise ValueError(f"{path}: its header declares dims {dims} ({expected} bytes), but the file "
                         f"{'ends early or is corrupt (gzip size field)' if gzipped else f'has {actual} bytes'}: "
                         "truncated or corrupt; replace it with an intact copy")
    return dims
