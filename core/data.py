"""Datasets as uint8 tensors on the training device, batching by randperm slicing, dataset fingerprints.

Images are kept as uint8 (N, 1, 28, 28) tensors and converted to float [0, 1] per batch with `to_float`,
so a whole dataset fits on the device cheaply and no DataLoader workers compete for the cores.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import numbers
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core import idx_files, registry
from core.errors import DataNotFoundError  # noqa: F401  (re-exported: part of this module's API)

DATASETS = registry.DATASETS  # their loaders: load_dataset below
NUM_CLASSES = 10
IMAGE_SIZE = 28

IDX_FILES, SAMPLE_DIR, DEBIAN_FASHION_DIR = idx_files.IDX_FILES, idx_files.SAMPLE_DIR, idx_files.DEBIAN_FASHION_DIR
_TORCHVISION_DIRS = idx_files.TORCHVISION_DIRS
find_idx_files, default_cache_dir = idx_files.find_idx_files, idx_files.default_cache_dir  # re-exported API


# ----------------------------------------------------------------------------------------------- idx files


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot read idx file ({err})") from err
    if raw[:2] != b"\x1f\x8b":  # gzip magic: decide by content, not by the file name
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({err})") from err


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (gzipped or not) of unsigned bytes into a writable uint8 array of its dimensions.

    Raises ValueError naming the file when the magic number, the dtype code (only 0x08 = uint8 is accepted),
    the dimensions or the byte count are wrong.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated idx file ({len(data)} bytes, the header alone needs at least 4)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path}: wrong magic number 0x{data[:4].hex()} (an idx file starts with 0x0000, then the dtype "
            "code and the number of dimensions); is this really an idx file?"
        )
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise ValueError(f"{path}: unsupported idx dtype code 0x{dtype_code:02x}; only 0x08 (uint8) is read")
    if ndim == 0:
        raise ValueError(f"{path}: idx header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(
            f"{path}: truncated idx header ({len(data)} bytes, {header_len} needed for {ndim} dims)"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims)
    payload = len(data) - header_len
    if payload < expected:
        raise ValueError(
            f"{path}: truncated idx file: dims {dims} need {expected} data bytes, found {payload}"
        )
    if payload > expected:
        raise ValueError(f"{path}: {payload - expected} unexpected trailing bytes after the {dims} array")
    return np.frombuffer(bytearray(data[header_len:]), dtype=np.uint8).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an idx file, gzipped with mtime=0 (reproducible bytes) if the name ends .gz."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx({path}): only uint8 arrays are supported, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx({path}): need 1 to 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=9, mtime=0)
    path.write_bytes(payload)
    return path


# ------------------------------------------------------------------------------------------------- splits


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_pair(images: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        got = getattr(images, "dtype", type(images))
        raise TypeError(f"{what}: images must be a uint8 tensor, got {got}")
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"{what}: images must have shape (N, 1, H, W), got {tuple(images.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
        got = getattr(labels, "dtype", type(labels))
        raise TypeError(f"{what}: labels must be a 1-D int64 tensor, got {got}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{what}: {images.shape[0]} images but {labels.shape[0]} labels; the two must have the same N "
            "(are the image and label files from the same split?)"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= NUM_CLASSES):
        raise ValueError(
            f"{what}: labels must lie in 0..{NUM_CLASSES - 1}, found {int(labels.min())}..{int(labels.max())}"
        )


def _class_quotas(counts: list[int], n: int, generator: torch.Generator) -> list[int]:
    """Split n over classes as equally as their sizes allow; leftovers go to classes the generator draws."""
    quotas = [0] * len(counts)
    remaining = n
    while remaining > 0:
        open_ = [c for c in range(len(counts)) if quotas[c] < counts[c]]
        share = remaining // len(open_)
        if share == 0:
            order = torch.randperm(len(open_), generator=generator).tolist()
            for i in order[:remaining]:
                quotas[open_[i]] += 1
            break
        for c in open_:
            take = min(share, counts[c] - quotas[c])
            quotas[c] += take
            remaining -= take
    return quotas


# eq=False: field-wise == on tensors is ambiguous; identity equality is what callers can rely on.
@dataclass(frozen=True, eq=False)
class Split:
    """One split: uint8 images (N, 1, 28, 28) in 0..255 and int64 labels (N,) in 0..9, on one device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __repr__(self) -> str:
        return f"Split(n={len(self)}, images={tuple(self.images.shape)}, device={self.images.device})"

    def __post_init__(self) -> None:
        _check_pair(self.images, self.labels, "Split")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))

    def select(self, indices: torch.Tensor | Sequence[int]) -> Split:
        idx = torch.as_tensor(indices, dtype=torch.long).to(self.images.device)
        if idx.ndim != 1:
            raise ValueError(f"Split.select: indices must be 1-D, got shape {tuple(idx.shape)}")
        return Split(self.images[idx], self.labels[idx])

    def subset_indices(self, n: int, seed: int, stratified: bool = True) -> torch.Tensor:
        """Sorted CPU indices of a seeded n-example subset (stratified: as equal per class as possible)."""
        if not _is_int(n) or n < 1:
            raise ValueError(f"subset size must be a positive integer, got {n!r}")
        n = int(n)
        if n > len(self):
            raise ValueError(f"subset of {n} requested but the split has only {len(self)} examples; "
                             f"use a size <= {len(self)} or no subset")
        gen = torch.Generator().manual_seed(int(seed))
        if not stratified:
            return torch.randperm(len(self), generator=gen)[:n].sort().values
        labels = self.labels.cpu()
        classes = torch.unique(labels).tolist()
        members = [torch.nonzero(labels == c).flatten() for c in classes]
        quotas = _class_quotas([len(m) for m in members], n, gen)
        picked = [m[torch.randperm(len(m), generator=gen)[:q]] for m, q in zip(members, quotas, strict=True)]
        return torch.cat(picked).sort().values

    def subset(self, n: int, seed: int, stratified: bool = True) -> Split:
        return self.select(self.subset_indices(n, seed, stratified))

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels.cpu(), minlength=NUM_CLASSES).tolist()


def fingerprint(train: Split, test: Split) -> str:
    """sha256 (first 16 hex chars) over both splits' shapes and image and label bytes, computed on CPU."""
    h = hashlib.sha256()
    for split in (train, test):
        for t in (split.images, split.labels):
            arr = np.ascontiguousarray(t.detach().cpu().numpy())
            h.update(f"{arr.dtype}{arr.shape}".encode())
            h.update(memoryview(arr).cast("B"))
    return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A named dataset: train and test splits, where it came from, and a fingerprint of its exact tensors.

    Leave `fingerprint` empty to have it computed from the tensors.
    """

    name: str
    train: Split
    test: Split
    source: str
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.train, self.test))

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
                f"source={self.source!r}, fingerprint={self.fingerprint!r})")

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(self.name, self.train.to(device), self.test.to(device), self.source, self.fingerprint)

    def with_subsets(self, train_subset: int | None, test_subset: int | None, seed: int) -> Dataset:
        """Seeded stratified subsets (None keeps a split whole); the fingerprint is recomputed for them."""
        if train_subset is None and test_subset is None:
            return self
        train = self.train if train_subset is None else self.train.subset(train_subset, seed)
        test = self.test if test_subset is None else self.test.subset(test_subset, seed)
        source = f"{self.source} [subset train={len(train)} test={len(test)} seed={seed}]"
        return Dataset(self.name, train, test, source)


# ------------------------------------------------------------------------------------------------ loading


def _split_from_arrays(images: np.ndarray, labels: np.ndarray, img_path: Path, lbl_path: Path) -> Split:
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{img_path}: expected images of shape (N, 28, 28), got {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{lbl_path}: expected a 1-D label array, got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{img_path} holds {images.shape[0]} images but {lbl_path} holds {labels.shape[0]} labels; "
            "the two files must belong to the same split"
        )
    if images.shape[0] == 0:
        raise ValueError(f"{img_path}: the idx file holds no images (0 × 28 × 28); use a complete copy of the split")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise ValueError(f"{lbl_path}: labels must lie in 0..9, found {int(labels.max())}")
    return Split(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def load_idx_folder(folder: Path, name: str = "idx dataset") -> Dataset:
    """Read the four idx files of `folder` (see find_idx_files) into a Dataset."""
    files = find_idx_files(folder, name)
    arrays = {key: read_idx(path) for key, path in files.items()}
    train = _split_from_arrays(arrays["train_images"], arrays["train_labels"],
                               files["train_images"], files["train_labels"])
    test = _split_from_arrays(arrays["test_images"], arrays["test_labels"],
                              files["test_images"], files["test_labels"])
    return Dataset(name, train, test, str(files["train_images"].parent))


def _download(name: str, cache_dir: Path) -> None:
    import torchvision.datasets as tvd  # imported lazily: slow, and only needed for a download

    cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
    cache_dir.mkdir(parents=True, exist_ok=True)
    cls(root=str(cache_dir), train=True, download=True)  # fetches all four files into ROOT/<Class>/raw


def _load_torchvision_name(name: str, data_dir: str | Path | None, download: bool | None,
                           cache_dir: Path | None) -> Dataset:
    if data_dir is not None:
        return load_idx_folder(Path(data_dir).expanduser(), name)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        return load_idx_folder(cache, name)
    except DataNotFoundError as err:
        if download is False:
            message = idx_files.not_found_message(f"{name} (download disabled)", cache, err.missing, name,
                                                  idx_files.cache_fix(name))
            raise DataNotFoundError(message, cache, err.missing) from err
    try:
        _download(name, cache)
    except Exception as err:  # no network, mirror down, disk full...: all end in the same advice
        cause = " ".join(f"{type(err).__name__}: {err}".split())
        message = f"{name}: download into {cache} failed.\nCause: {cause}\nFix: {idx_files.cache_fix(name)}"
        raise DataNotFoundError(message, cache) from err
    return load_idx_folder(cache, name)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool | None = None,
    cache_dir: Path | None = None,
    synthetic_sizes: tuple[int, int] = registry.SYNTHETIC_SIZES,
    seed: int = 0,
) -> Dataset:
    """Load one of DATASETS as uint8 tensors on CPU (move with `.to(device)`).

    - "mnist-sample": 4,000/1,000 real MNIST digits shipped with the package; never touches the network.
    - "mnist" / "fashion-mnist": the four idx files from `data_dir` (also DIR/raw, DIR/MNIST/raw,
      DIR/FashionMNIST/raw); without `data_dir`, from `cache_dir` (default $AMLTUI_DATA_DIR or
      ~/.cache/amltui/data), downloaded there through torchvision unless `download` is False.
    - "synthetic": generated from `seed` with `synthetic_sizes` (train, test); for tests and smoke runs only.
    `data_dir` is ignored for "mnist-sample" and "synthetic"; `seed` only affects "synthetic".
    """
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if key == "mnist-sample":
        ds = load_idx_folder(SAMPLE_DIR, key)
        return Dataset(key, ds.train, ds.test, f"shipped sample {SAMPLE_DIR}", ds.fingerprint)
    if key == "synthetic":
        n_train, n_test = synthetic_sizes
        return make_synthetic(n_train, n_test, seed)
    return _load_torchvision_name(key, data_dir, download, cache_dir)


# ---------------------------------------------------------------------------------------------- synthetic

# Digit-like polylines in a unit box (x right, y down). Each class is a distinct stroke pattern.
_TEMPLATES: dict[int, list[list[tuple[float, float]]]] = {
    0: [[(0.5, 0.0), (0.8, 0.15), (0.9, 0.5), (0.8, 0.85), (0.5, 1.0), (0.2, 0.85), (0.1, 0.5), (0.2, 0.15),
         (0.5, 0.0)]],
    1: [[(0.3, 0.2), (0.55, 0.0), (0.55, 1.0)]],
    2: [[(0.15, 0.25), (0.35, 0.0), (0.7, 0.0), (0.85, 0.25), (0.15, 1.0), (0.9, 1.0)]],
    3: [[(0.15, 0.05), (0.85, 0.05), (0.45, 0.45), (0.85, 0.65), (0.7, 0.95), (0.15, 0.9)]],
    4: [[(0.65, 1.0), (0.65, 0.0), (0.1, 0.65), (0.9, 0.65)]],
    5: [[(0.85, 0.0), (0.25, 0.0), (0.2, 0.45), (0.7, 0.45), (0.85, 0.75), (0.6, 1.0), (0.15, 0.95)]],
    6: [[(0.75, 0.0), (0.3, 0.4), (0.2, 0.75), (0.45, 1.0), (0.75, 0.85), (0.7, 0.55), (0.25, 0.65)]],
    7: [[(0.1, 0.0), (0.9, 0.0), (0.4, 1.0)], [(0.35, 0.5), (0.75, 0.5)]],
    8: [[(0.5, 0.5), (0.2, 0.25), (0.5, 0.0), (0.8, 0.25), (0.5, 0.5), (0.15, 0.75), (0.5, 1.0), (0.85, 0.75),
         (0.5, 0.5)]],
    9: [[(0.8, 0.3), (0.5, 0.0), (0.2, 0.2), (0.4, 0.45), (0.8, 0.3), (0.65, 1.0)]],
}


def _template_segments() -> torch.Tensor:
    """(10, S, 2, 2) segment endpoints; shorter classes repeat their last segment (harmless under a min)."""
    per_class = []
    for c in range(NUM_CLASSES):
        segs = [(a, b) for line in _TEMPLATES[c] for a, b in zip(line[:-1], line[1:], strict=True)]
        per_class.append(segs)
    s_max = max(len(s) for s in per_class)
    padded = [s + [s[-1]] * (s_max - len(s)) for s in per_class]
    return torch.tensor(padded, dtype=torch.float32)


def _render(labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Jittered, rotated, scaled, shifted strokes of random thickness, plus noise -> uint8 (N, 1, 28, 28)."""
    n = labels.shape[0]
    segs = _template_segments()[labels]  # (n, S, 2, 2)
    segs = segs + 0.04 * torch.randn(segs.shape, generator=gen)  # per-endpoint wobble
    angle = (torch.rand(n, generator=gen) - 0.5) * math.radians(30)
    scale = 0.85 + 0.25 * torch.rand(n, generator=gen)
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 6.0  # up to +-3 px
    thick = 0.8 + 1.2 * torch.rand(n, generator=gen)
    contrast = 0.7 + 0.3 * torch.rand(n, generator=gen)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (n, 2, 2)
    # Unit box -> a 20x20 px box centred in 28x28, as MNIST digits are.
    pts = torch.einsum("nij,nskj->nski", rot, segs - 0.5) * 20.0 + 14.0 + shift[:, None, None, :]
    a, b = pts[:, :, 0, :], pts[:, :, 1, :]  # (n, S, 2)
    ys, xs = torch.meshgrid(torch.arange(IMAGE_SIZE) + 0.5, torch.arange(IMAGE_SIZE) + 0.5, indexing="ij")
    grid = torch.stack([xs.flatten(), ys.flatten()], -1)  # (784, 2) pixel centres
    ab = b - a
    denom = (ab * ab).sum(-1).clamp_min(1e-6)  # (n, S)
    ap = grid[None, None] - a[:, :, None, :]  # (n, S, 784, 2)
    t = ((ap * ab[:, :, None, :]).sum(-1) / denom[:, :, None]).clamp(0, 1)
    dist = (ap - t[..., None] * ab[:, :, None, :]).norm(dim=-1).amin(1)  # (n, 784)
    ink = (thick[:, None] + 0.5 - dist).clamp(0, 1) * contrast[:, None]
    ink = ink + 0.06 * torch.randn(ink.shape, generator=gen)
    img = (ink.clamp(0, 1) * 255).round().to(torch.uint8)
    return img.view(n, 1, IMAGE_SIZE, IMAGE_SIZE)


def _synthetic_split(n: int, gen: torch.Generator, chunk: int = 512) -> Split:
    labels = (torch.arange(n) % NUM_CLASSES)[torch.randperm(n, generator=gen)]
    images = torch.cat([_render(labels[i : i + chunk], gen) for i in range(0, n, chunk)]) if n else \
        torch.zeros(0, 1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    return Split(images, labels)


def make_synthetic(n_train: int = 2000, n_test: int = 500, seed: int = 0) -> Dataset:
    """Synthetic 10-class digit-like strokes, deterministic for a seed. FOR TESTS AND SMOKE RUNS ONLY.

    Each class is a fixed polyline template drawn with random wobble, rotation (+-15 deg), scale, shift
    (+-3 px), stroke thickness, contrast and pixel noise: learnable by a small CNN, but not trivially.
    """
    for label, v in (("train", n_train), ("test", n_test)):
        if not _is_int(v) or v < 0:
            raise ValueError(f"synthetic {label} size must be a non-negative integer, got {v!r}")
    gen = torch.Generator().manual_seed(int(seed))
    train = _synthetic_split(int(n_train), gen)
    test = _synthetic_split(int(n_test), gen)
    return Dataset("synthetic", train, test, f"generated (seed={seed}, sizes={n_train}/{n_test})")


# ----------------------------------------------------------------------------------------------- batching


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1], on the same device."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 images (0..255), got {images.dtype}; "
                        "float images are already converted")
    return images.to(torch.float32).div_(255.0)


def batch_indices(
    n: int,
    batch_size: int,
    generator: torch.Generator,
    *,
    device: torch.device | str | None = None,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """One epoch of shuffled index batches: a seeded randperm (drawn now, from `generator`) sliced in order.

    The permutation is drawn on the generator's device (CPU normally, so runs reproduce across devices) and
    then moved to `device`.
    """
    if not _is_int(n) or n < 0:
        raise ValueError(f"batch_indices: n must be a non-negative integer, got {n!r}")
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_indices: batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(generator, torch.Generator):
        raise TypeError("batch_indices: pass a seeded torch.Generator, e.g. torch.Generator().manual_seed(0)")
    perm = torch.randperm(n, generator=generator, device=generator.device)
    if device is not None:
        perm = perm.to(device)
    n, batch_size = int(n), int(batch_size)
    stop = n - n % batch_size if drop_last else n
    return iter([perm[i : i + batch_size] for i in range(0, stop, batch_size)])
