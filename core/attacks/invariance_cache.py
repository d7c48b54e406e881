"""On-disk, resumable cache of chunked tensor results (used for invariance sets).

Layout of one entry, ``<root>/<key>/`` (root is usually ``<runs_dir>/cache/invariance``):

* ``chunk_00000.pt`` … — ``torch.save`` of a dict of tensors for rows [start, end), each written to a temp file
  and moved into place with ``os.replace`` so a reader never sees half a file;
* ``manifest.json`` — the key fields, the chunking, and the sha256 of every finished chunk (also replaced
  atomically, after the chunk it records);
* ``complete`` — written last, once every chunk is present and verified.

A chunk counts only if the manifest records it and its bytes hash to the recorded sha256 and it loads with
``torch.load(weights_only=True)`` into the expected rows; anything else is reported through ``warn``, deleted
and rebuilt, so an interrupted or damaged generation resumes from the chunks that are still good.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from core.fsio import atomic_write, make_folder, open_regular

__all__ = [
    "CACHE_FORMAT",
    "ChunkedCache",
    "cache_key",
    "default_cache_root",
]

CACHE_FORMAT = 1
MANIFEST = "manifest.json"
COMPLETE = "complete"

log = logging.getLogger(__name__)

BuildChunk = Callable[[int, int], dict[str, Tensor]]


def default_cache_root(runs_dir: str | Path) -> Path:
    """Where invariance sets of a runs folder live: ``<runs_dir>/cache/invariance``."""
    return Path(runs_dir) / "cache" / "invariance"


def _canonical(fields: Mapping[str, Any]) -> str:
    try:
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cache key fields must be plain JSON values (str, int, float, lists, dicts): {exc}") from exc


def cache_key(fields: Mapping[str, Any]) -> str:
    """A 24-hex-digit sha256 of the fields (sorted-key JSON) and the cache format version."""
    text = _canonical({"cache_format": CACHE_FORMAT, **fields})
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open_regular(path) as f:  # a FIFO in its place is refused, never waited on
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ChunkedCache:
    """One cache entry: ``total`` rows produced in chunks of ``chunk_size`` by a build function."""

    def __init__(
        self,
        root: str | Path,
        fields: Mapping[str, Any],
        total: int,
        chunk_size: int,
        *,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if total < 0 or chunk_size < 1:
            raise ValueError(f"need total >= 0 and chunk_size >= 1, got total={total}, chunk_size={chunk_size}.")
        self.fields = {**fields, "total": int(total), "chunk_size": int(chunk_size)}
        self.key = cache_key(self.fields)
        self.dir = Path(root) / self.key
        self.total = int(total)
        self.chunk_size = int(chunk_size)
        self.warn = warn or log.warning
        self.bounds = [(s, min(self.total, s + self.chunk_size)) for s in range(0, self.total, self.chunk_size)]

    # ---- paths and state ------------------------------------------------------------------------------------
    def chunk_path(self, i: int) -> Path:
        return self.dir / f"chunk_{i:05d}.pt"

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    def is_complete(self) -> bool:
        """True when the ``complete`` marker exists (chunks are still verified when loaded)."""
        return (self.dir / COMPLETE).is_file()

    def _empty_manifest(self) -> dict[str, Any]:
        return {"format": CACHE_FORMAT, "key": self.key, "fields": self.fields, "chunks": {}}

    def _read_manifest(self) -> dict[str, Any]:
        path = self.manifest_path
        if not path.exists():
            return self._empty_manifest()
        try:
            with open_regular(path) as f:  # a FIFO in its place is refused, never waited on
                manifest = json.loads(f.read())
            ok = (
                isinstance(manifest, dict)
                and manifest.get("format") == CACHE_FORMAT
                and manifest.get("key") == self.key
                and manifest.get("fields") == json.loads(_canonical(self.fields))
                and isinstance(manifest.get("chunks"), dict)
            )
        except (OSError, ValueError, RecursionError) as exc:
            ok, manifest = False, None
            reason = f"unreadable ({exc.__class__.__name__}: {exc})"
        else:
            reason = "does not match this cache entry"
        if not ok:
            self.warn(f"invariance cache: manifest {path} is {reason}; deleting it and regenerating the "
                      "chunks it would have vouched for.")
            path.unlink(missing_ok=True)
            (self.dir / COMPLETE).unlink(missing_ok=True)
            return self._empty_manifest()
        return manifest

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        atomic_write(self.manifest_path, lambda f: f.write(data))

    # ---- chunks ---------------------------------------------------------------------------------------------
    def _load_chunk(self, i: int, record: Any) -> dict[str, Tensor] | None:
        """The verified contents of chunk i, or None (after a warning and deleting it) if it is not good."""
        path = self.chunk_path(i)
        start, end = self.bounds[i]
        if not isinstance(record, dict) or not path.is_file():
            if path.exists():
                path.unlink()  # written but never recorded: an interruption between the two steps
            return None
        problem = None
        if _sha256(path) != record.get("sha256"):
            problem = "sha256 does not match the manifest (truncated or modified)"
        else:
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any load failure means a bad chunk
                problem = f"torch.load failed ({exc.__class__.__name__}: {exc})"
            else:
                if not isinstance(data, dict) or not data or not all(
                    isinstance(v, Tensor) and v.shape[:1] == (end - start,) for v in data.values()
                ):
                    problem = f"does not hold tensors for rows [{start}, {end})"
        if problem is not None:
            self.warn(f"invariance cache: chunk {path} {problem}; deleting it and regenerating rows "
                      f"[{start}, {end}).")
            path.unlink(missing_ok=True)
            return None
        return data

    def _save_chunk(self, i: int, data: dict[str, Tensor]) -> str:
        start, end = self.bounds[i]
        if not isinstance(data, dict) or not data:
            raise TypeError("the chunk build function must return a non-empty dict of tensors.")
        clean = {}
        for name, value in data.items():
            if not isinstance(value, Tensor) or value.shape[:1] != (end - start,):
                raise ValueError(f"chunk entry {name!r} must be a tensor with {end - start} rows "
                                 f"(rows [{start}, {end})), got {getattr(value, 'shape', type(value))}.")
            clean[name] = value.detach().cpu().contiguous()
        path = self.chunk_path(i)
        atomic_write(path, lambda f: torch.save(clean, f))
        return _sha256(path)

    def load_or_build(
        self,
        build: BuildChunk,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Tensor]:
        """All rows, reusing every good chunk and calling ``build(start, end)`` for the others.

        ``progress(done_rows, total)`` is called after every chunk, loaded or built. An exception from
        ``build`` or ``progress`` propagates; the chunks finished before it stay on disk for the next call.
        """
        # cache/, invariance/ and the entry: each a real folder, never a link out of a shared runs folder.
        make_folder(self.dir.parent.parent, parents=True)
        make_folder(self.dir.parent)
        make_folder(self.dir)
        manifest = self._read_manifest()
        chunks: list[dict[str, Tensor]] = []
        dirty = False
        for i, (start, end) in enumerate(self.bounds):
            name = self.chunk_path(i).name
            data = self._load_chunk(i, manifest["chunks"].get(name))
            if data is None:
                if manifest["chunks"].pop(name, None) is not None:
                    dirty = True
                (self.dir / COMPLETE).unlink(missing_ok=True)
                data = {k: v.detach().cpu() for k, v in build(start, end).items()}
                sha = self._save_chunk(i, data)
                manifest["chunks"][name] = {"start": start, "end": end, "sha256": sha}
                self._write_manifest(manifest)
                dirty = False
            chunks.append(data)
            if progress is not None:
                progress(end, self.total)
        if dirty or not self.manifest_path.exists():
            self._write_manifest(manifest)
        if not self.is_complete():
            atomic_write(self.dir / COMPLETE, lambda f: f.write(b"complete\n"))
        return self._concat(chunks)

    @staticmethod
    def _concat(chunks: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        if not chunks:
            return {}
        names = list(chunks[0])
        if any(list(c) != names for c in chunks):
            raise ValueError("cache chunks disagree on their tensor names; delete the cache folder and retry.")
        return {n: torch.cat([c[n] for c in chunks]) for n in names}
