"""amltui/app/preflight.py: what would fail a run is an error before it is queued (real idx files, no torch)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from amltui.app.gpus import Gpu, Inventory
from amltui.app.preflight import PreflightError, check_config, split_sizes
from core.config import RunConfig
from core.errors import DataNotFoundError
from core.idx_files import SAMPLE_DIR, find_idx_files, read_idx_header
from tests.helpers import FASHION_DIR, ROOT, needs_fashion_mnist

ONE_GPU = Inventory(gpus=[Gpu(index=0, uuid="GPU-aaaa", name="Test GPU")], source="nvml")


def config(**kw) -> RunConfig:
    return RunConfig(**{"dataset": "mnist-sample", "device": "cpu", **kw})


def never(host: str, port: int) -> bool:
    raise AssertionError("no probe expected")


@needs_fashion_mnist
def test_real_fashion_mnist_passes_and_sizes_come_from_the_headers() -> None:
    assert split_sizes("fashion-mnist", str(FASHION_DIR), never) == (60000, 10000)
    check_config(config(dataset="fashion-mnist", data_dir=str(FASHION_DIR), test_subset=10000), probe=never)


def test_mnist_sample_sizes_and_a_too_large_subset() -> None:
    assert split_sizes("mnist-sample", None, never) == (4000, 1000)
    check_config(config(test_subset=1000, train_subset=4000), probe=never)
    with pytest.raises(PreflightError) as err:
        check_config(config(test_subset=5000), probe=never)
    assert str(err.value) == ("--test-subset 5000: the mnist-sample test split holds only 1000 images.\n"
                              "Fix: use --test-subset 1000 or less, or leave it out (whole split)")


@needs_fashion_mnist
def test_fashion_train_subset_too_large() -> None:
    with pytest.raises(PreflightError, match=r"--train-subset 60001: the fashion-mnist train split holds only 60000"):
        check_config(config(dataset="fashion-mnist", data_dir=str(FASHION_DIR), train_subset=60001), probe=never)


def test_missing_data_dir_names_it_once_with_a_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(PreflightError) as err:
        check_config(config(dataset="fashion-mnist", data_dir=str(missing)), probe=never)
    text = str(err.value)
    assert text.startswith(f"fashion-mnist: no folder {missing}.\nFix: check the path (--data-dir)")
    assert text.count("t10k-labels-idx1-ubyte") == 1 and "apt-get install dataset-fashion-mnist" in text
    assert "pass --data-dir" not in text  # it was passed


def test_folder_lacking_files_says_which_and_how_to_get_them(tmp_path: Path) -> None:
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(SAMPLE_DIR / name, tmp_path / name)
    with pytest.raises(PreflightError) as err:
        check_config(config(dataset="mnist", data_dir=str(tmp_path)), probe=never)
    assert str(err.value) == (
        f"mnist: {tmp_path} lacks t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz].\n"
        "Fix: get them: download them from an MNIST mirror (e.g. https://ossci-datasets.s3.amazonaws.com/mnist/); "
        f"put the four files in {tmp_path} (or in {tmp_path}/raw).")
    assert isinstance(err.value.__cause__, DataNotFoundError)


def _plain_copy(src: Path, dst: Path) -> dict[str, Path]:
    """The four files of ``src`` decompressed into ``dst`` (so that bytes can be cut or overwritten)."""
    for path in find_idx_files(src).values():
        (dst / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(path.read_bytes()))
    return find_idx_files(dst)


@pytest.mark.parametrize("damage", ["truncated", "garbled", "short-header"])
def test_damaged_idx_file_is_named(tmp_path: Path, damage: str) -> None:
    files = _plain_copy(SAMPLE_DIR, tmp_path)
    target = files["test_images"]
    raw = target.read_bytes()
    target.write_bytes({"truncated": raw[:-100], "garbled": b"\x12\x34" + raw[2:], "short-header": raw[:10]}[damage])
    with pytest.raises(PreflightError) as err:
        check_config(config(dataset="mnist", data_dir=str(tmp_path)), probe=never)
    text = str(err.value)
    assert text.startswith(f"mnist: {target}: ") and text.endswith("replace it with an intact copy")
    assert {"truncated": "(784016 bytes), but the file has 783916 bytes", "garbled": "not a uint8 idx file",
            "short-header": "truncated idx header"}[damage] in text


@needs_fashion_mnist
def test_truncated_gzip_copy_of_fashion_is_caught_without_decompressing(tmp_path: Path) -> None:
    for path in FASHION_DIR.iterdir():
        shutil.copy(path, tmp_path / path.name)
    cut = tmp_path / "t10k-labels-idx1-ubyte.gz"
    cut.write_bytes(cut.read_bytes()[:-50])
    with pytest.raises(PreflightError, match="ends early or is corrupt"):
        check_config(config(dataset="fashion-mnist", data_dir=str(tmp_path)), probe=never)
    assert read_idx_header(tmp_path / "t10k-images-idx3-ubyte.gz") == (10000, 28, 28)


def test_images_and_labels_of_different_splits(tmp_path: Path) -> None:
    files = _plain_copy(SAMPLE_DIR, tmp_path)
    shutil.copy(files["train_labels"], files["test_labels"])
    with pytest.raises(PreflightError, match=r"declares images \(1000, 28, 28\) and .* labels \(4000,\)"):
        check_config(config(dataset="mnist", data_dir=str(tmp_path)), probe=never)


def test_empty_cache_depends_on_the_download_mirror(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AMLTUI_DATA_DIR", str(tmp_path))
    with pytest.raises(PreflightError) as err:
        check_config(config(dataset="mnist"), probe=lambda host, port: False)
    text = str(err.value)
    assert text.startswith(f"mnist: not in the download cache {tmp_path}, and its mirror ")
    assert "Fix: pass --data-dir DIR with the four idx files" in text
    check_config(config(dataset="mnist", test_subset=10000), probe=lambda host, port: True)  # the worker downloads
    with pytest.raises(PreflightError, match="--test-subset 10001"):
        check_config(config(dataset="mnist", test_subset=10001), probe=lambda host, port: True)


def test_gpu_ids_must_be_visible() -> None:
    check_config(config(device="cuda:0"), inventory=ONE_GPU, env={})
    check_config(config(), gpus="0", inventory=ONE_GPU, env={})
    with pytest.raises(PreflightError) as err:
        check_config(config(device="cuda:1"), inventory=ONE_GPU, env={})
    assert str(err.value).startswith("device=cuda:1: no visible GPU 1 (visible: 0 (gpu0)).\nFix: ")
    with pytest.raises(PreflightError, match=r"--gpus 0,3: no visible GPU 3"):
        check_config(config(), gpus="0,3", inventory=ONE_GPU, env={})
    with pytest.raises(PreflightError, match="device=cuda: no GPU is visible; no driver"):
        check_config(config(device="cuda"), inventory=Inventory(problem="no driver"), env={})
    with pytest.raises(PreflightError, match="no visible GPU 0"):  # CUDA_VISIBLE_DEVICES hides it
        check_config(config(device="cuda:0"), inventory=ONE_GPU, env={"CUDA_VISIBLE_DEVICES": ""})
    check_config(config(device="cpu"), gpus="none", inventory=ONE_GPU, env={})
    check_config(config(device="cuda:3"), local=False, inventory=ONE_GPU, env={})  # Slurm: another machine


@pytest.mark.slow
def test_preflight_imports_no_torch() -> None:
    code = ("import sys; from amltui.app.preflight import check_config; from core.config import RunConfig; "
            "check_config(RunConfig(dataset='mnist-sample', device='cpu')); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
