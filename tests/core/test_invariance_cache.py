"""The resumable on-disk cache of invariance sets: hits, misses, interruption and corruption."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from core.attacks import invariance as inv
from core.attacks.invariance import InvarianceSet, invariance_set_for, make_grid
from core.attacks.invariance_cache import ChunkedCache, cache_key, default_cache_root
from core.data import make_synthetic

GRID = make_grid((0.0, 1.5), (-4.0, 0.0, 4.0))


class Builder:
    """A deterministic build function that records which rows it was asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> dict[str, torch.Tensor]:
        self.calls.append((start, end))
        rows = torch.arange(start, end)
        return {"value": rows.float() * 1.5, "index": rows, "image": rows.float().view(-1, 1, 1).expand(-1, 2, 2)}


def _expected(total: int) -> dict[str, torch.Tensor]:
    return Builder()(0, total)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_hit_and_miss_on_changed_fields(tmp_path):
    build = Builder()
    first = ChunkedCache(tmp_path, {"eps": 0.3}, total=10, chunk_size=4).load_or_build(build)
    assert build.calls == [(0, 4), (4, 8), (8, 10)] and _same(first, _expected(10))
    cache = ChunkedCache(tmp_path, {"eps": 0.3}, total=10, chunk_size=4)
    assert cache.is_complete()
    again = cache.load_or_build(build)
    assert len(build.calls) == 3 and _same(again, first)  # nothing rebuilt
    ChunkedCache(tmp_path, {"eps": 0.4}, total=10, chunk_size=4).load_or_build(build)
    assert len(build.calls) == 6  # another key, another folder
    assert cache_key({"eps": 0.3}) != cache_key({"eps": 0.4})
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})


def test_interrupted_generation_resumes_with_only_the_missing_chunks(tmp_path):
    build = Builder()

    def stop_after_two_chunks(done: int, total: int) -> None:
        if done >= 8:
            raise KeyboardInterrupt

    cache = ChunkedCache(tmp_path, {"k": 1}, total=14, chunk_size=4)
    with pytest.raises(KeyboardInterrupt):
        cache.load_or_build(build, progress=stop_after_two_chunks)
    assert not cache.is_complete()
    assert build.calls == [(0, 4), (4, 8)]
    build.calls.clear()
    seen = []
    result = ChunkedCache(tmp_path, {"k": 1}, total=14, chunk_size=4).load_or_build(
        build, progress=lambda d, t: seen.append((d, t)))
    assert build.calls == [(8, 12), (12, 14)]
    assert seen == [(4, 14), (8, 14), (12, 14), (14, 14)]
    assert _same(result, _expected(14)) and cache.is_complete()


def test_a_chunk_written_but_never_recorded_is_rebuilt(tmp_path):
    build = Builder()
    cache = ChunkedCache(tmp_path, {"k": 2}, total=8, chunk_size=4)
    cache.load_or_build(build)
    manifest = json.loads(cache.manifest_path.read_text())
    del manifest["chunks"]["chunk_00001.pt"]  # as if killed between the chunk's replace and the manifest's
    cache.manifest_path.write_text(json.dumps(manifest))
    (cache.dir / "complete").unlink()
    build.calls.clear()
    assert _same(cache.load_or_build(build), _expected(8)) and build.calls == [(4, 8)]


@pytest.mark.parametrize("damage", ["truncate", "garble_bytes", "not_a_dict"])
def test_corrupt_chunk_is_detected_warned_and_only_it_regenerated(tmp_path, damage):
    build = Builder()
    cache = ChunkedCache(tmp_path, {"k": 3}, total=12, chunk_size=4)
    cache.load_or_build(build)
    path = cache.chunk_path(1)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garble_bytes":
        path.write_bytes(data[:100] + bytes(b ^ 0xFF for b in data[100:140]) + data[140:])
    else:  # a valid file with the right hash but the wrong contents must not pass either
        torch.save([1, 2, 3], path)
        manifest = json.loads(cache.manifest_path.read_text())
        manifest["chunks"]["chunk_00001.pt"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        cache.manifest_path.write_text(json.dumps(manifest))
    warnings: list[str] = []
    build.calls.clear()
    result = ChunkedCache(tmp_path, {"k": 3}, total=12, chunk_size=4, warn=warnings.append).load_or_build(build)
    assert build.calls == [(4, 8)]
    assert len(warnings) == 1 and "chunk_00001.pt" in warnings[0] and "regenerating" in warnings[0]
    assert _same(result, _expected(12))
    # Repaired: the next load is silent and builds nothing.
    warnings.clear()
    ChunkedCache(tmp_path, {"k": 3}, total=12, chunk_size=4, warn=warnings.append).load_or_build(build)
    assert warnings == [] and build.calls == [(4, 8)]


def test_garbled_manifest_is_detected_and_everything_rebuilt(tmp_path):
    build = Builder()
    cache = ChunkedCache(tmp_path, {"k": 4}, total=8, chunk_size=4)
    cache.load_or_build(build)
    cache.manifest_path.write_text('{"format": 1, "chunks": {"chunk_0')  # cut mid-write
    warnings: list[str] = []
    build.calls.clear()
    result = ChunkedCache(tmp_path, {"k": 4}, total=8, chunk_size=4, warn=warnings.append).load_or_build(build)
    assert any("manifest" in w for w in warnings)
    assert build.calls == [(0, 4), (4, 8)] and _same(result, _expected(8))


@pytest.mark.parametrize("planted", ["fifo", "nested"])
def test_a_fifo_or_a_deeply_nested_manifest_is_rebuilt_not_waited_on(tmp_path, planted):
    import os
    import signal

    def hung(*_):
        raise TimeoutError("reading the planted manifest blocked")

    signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)  # a regression fails this test instead of hanging the suite
    build = Builder()
    cache = ChunkedCache(tmp_path, {"k": 6}, total=8, chunk_size=4)
    cache.load_or_build(build)
    cache.manifest_path.unlink()
    if planted == "fifo":
        os.mkfifo(cache.manifest_path)  # a plain read would block here for ever
    else:
        cache.manifest_path.write_text("[" * 100_000)
    warnings: list[str] = []
    build.calls.clear()
    result = ChunkedCache(tmp_path, {"k": 6}, total=8, chunk_size=4, warn=warnings.append).load_or_build(build)
    signal.alarm(0)
    assert any("manifest" in w and "unreadable" in w for w in warnings), warnings
    assert build.calls == [(0, 4), (4, 8)] and _same(result, _expected(8))


def test_chunks_load_with_weights_only(tmp_path):
    cache = ChunkedCache(tmp_path, {"k": 5}, total=3, chunk_size=2)
    cache.load_or_build(Builder())
    data = torch.load(cache.chunk_path(0), weights_only=True)
    assert set(data) == {"value", "index", "image"}
    assert default_cache_root(tmp_path) == tmp_path / "cache" / "invariance"


# --------------------------------------------------------------------------- through invariance_set_for


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(n_train=120, n_test=30, seed=0)


@pytest.fixture
def counted(monkeypatch):
    calls: list[int] = []
    real = inv.InvarianceGenerator.run

    def run(self, images, labels, exclude_self=None, progress=None):
        calls.append(images.shape[0])
        return real(self, images, labels, exclude_self, progress)

    monkeypatch.setattr(inv.InvarianceGenerator, "run", run)
    return calls


def _equal_sets(a: InvarianceSet, b: InvarianceSet) -> bool:
    return all(torch.equal(getattr(a, n), getattr(b, n)) for n in InvarianceSet.TENSORS)


@pytest.mark.slow  # seconds of computation (searches, attacks, training steps)
def test_invariance_set_for_hit_miss_interrupt_and_corruption(tiny, tmp_path, counted):
    opts = dict(mode="exact", grid=GRID, cache_chunk=10)
    plain = invariance_set_for(tiny, "test", **opts)  # no cache
    assert counted == [30]
    counted.clear()

    def interrupt(done: int, total: int) -> None:
        if done >= 15:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        invariance_set_for(tiny, "test", cache_root=tmp_path, progress=interrupt, **opts)
    assert counted == [10, 10]  # the second chunk was running when the progress callback raised
    counted.clear()
    resumed = invariance_set_for(tiny, "test", cache_root=tmp_path, **opts)
    assert counted == [10, 10]  # chunk 0 reused; chunks 1 and 2 generated
    assert _equal_sets(resumed, plain)
    counted.clear()
    hit = invariance_set_for(tiny, "test", cache_root=tmp_path, **opts)
    assert counted == [] and _equal_sets(hit, plain)

    chunk = next(p for p in tmp_path.rglob("chunk_00002.pt"))
    chunk.write_bytes(chunk.read_bytes()[:50])
    warnings: list[str] = []
    repaired = invariance_set_for(tiny, "test", cache_root=tmp_path, warn=warnings.append, **opts)
    assert counted == [10] and len(warnings) == 1 and _equal_sets(repaired, plain)

    counted.clear()
    invariance_set_for(tiny, "test", eps=0.4, cache_root=tmp_path, **opts)
    assert counted == [10, 10, 10]  # eps is part of the key


@pytest.mark.slow  # seconds of computation (searches, attacks, training steps)
def test_train_split_excludes_each_query_from_its_own_pool(tiny, monkeypatch):
    seen = {}
    real = inv.InvarianceGenerator.run

    def run(self, images, labels, exclude_self=None, progress=None):
        seen["exclude"] = exclude_self.clone()
        seen["pool"] = self.pool_size
        return real(self, images, labels, exclude_self, progress)

    monkeypatch.setattr(inv.InvarianceGenerator, "run", run)
    out = invariance_set_for(tiny, "train", mode="exact", grid=GRID, cache_chunk=200)
    assert seen["pool"] == 120 and torch.equal(seen["exclude"], torch.arange(120))
    assert len(out) == 120 and bool((out.neighbour_index != torch.arange(120)).all())
    with pytest.raises(ValueError, match="split"):
        invariance_set_for(tiny, "validation")


@pytest.mark.slow  # seconds of computation (searches, attacks, training steps)
def test_a_cached_fast_set_records_its_agreement_with_exact(tiny, tmp_path):
    from core.attacks.invariance import agreement, cached_agreement, generate

    fast = invariance_set_for(tiny, "train", mode="fast", grid=GRID, cache_root=tmp_path, agreement_sample=25)
    measured = cached_agreement(tiny, "train", 0.3, "fast", tmp_path, grid=GRID)
    assert measured is not None and measured["sample"] == 25 and measured["of"] == 120
    # The same numbers by hand: exact search on the same sample (seed 0) of the queries, own image excluded.
    idx = torch.randperm(120, generator=torch.Generator().manual_seed(0))[:25].sort().values
    exact = generate(tiny.train.images[idx], tiny.train.labels[idx], tiny.train.images, tiny.train.labels,
                     mode="exact", exclude_self=idx, grid=GRID)
    assert measured["same_neighbour"] == pytest.approx(agreement(exact, fast.select(idx))["same_neighbour"])
    assert cached_agreement(tiny, "train", 0.3, "exact", tmp_path, grid=GRID) is None
    assert cached_agreement(tiny, "test", 0.3, "fast", tmp_path, grid=GRID) is None  # not generated
