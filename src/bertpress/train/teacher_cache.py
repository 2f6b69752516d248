"""On-disk cache of the frozen teacher's features, for corpora read more than once (``train.teacher_cache``).

The teacher is frozen and, on packed blocks without MLM masking, sees the same input every time it reads a block,
so the features an objective reads from it (its :class:`~bertpress.models.features.FeatureRequest`) can be computed
once per training block and read back instead of running the teacher: several epochs over one corpus, or repeated
runs (ablations, seeds, a search's finalists) with the same teacher, corpus and mapping. Features are stored in
bf16 (one memory-mapped ``.npy`` of ``uint16`` per captured tensor, rows in training-index order) under
``<cache>/teacher/<key>``. The key covers the corpus cache key, the training blocks, the teacher's weights, the
request and the input layout, so another teacher, mapping or split never reads a stale cache. The size is logged
before it is built and checked against ``train.teacher_cache_max_gb`` and the free disk.

Lookup is by content: each batch row's token ids are hashed to the cached row and checked against the corpus
block, so the loader, sampler and resume need no change; a batch with any unknown row (never expected on the
corpus the cache was built from) runs the live teacher. Validation always runs the live teacher (fp32 targets).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import send_to_device
from torch import Tensor
from tqdm.auto import tqdm

from bertpress.atomic import atomic_dir, atomic_write_json
from bertpress.data.corpus import PackedCorpus
from bertpress.errors import BertpressError
from bertpress.models.features import FeatureRequest, Features, FeatureTap, teacher_forward
from bertpress.models.teacher import Teacher
from bertpress.progress import bars_enabled

log = logging.getLogger(__name__)

CACHE_VERSION = 1
#: Features kept per layer (``Features`` fields), in file-name order.
LAYERED = ("hidden", "query", "key", "value", "scores", "probs")
_BUILD_BATCH = 16


def _row_key(row: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(row, dtype=np.int32).tobytes(), digest_size=8).digest()


def _request_spec(request: FeatureRequest) -> dict[str, object]:
    return {**{k: sorted(getattr(request, k)) for k in LAYERED}, "logits": request.logits}


def cache_refusal(objective, corpus: PackedCorpus) -> str | None:
    """Why the teacher's features cannot be cached for this stage (None: they can)."""
    if objective.needs_masking:
        return ("the objective masks the teacher's input afresh every step (MLM), so its features are never read "
                "twice: turn train.teacher_cache off")
    if corpus.meta.get("unit", "blocks") != "blocks" or corpus.labels is not None:
        return ("train.teacher_cache needs packed blocks (data.unit: blocks, no labelled data): padded sentences "
                "and pairs are trimmed per batch; turn it off")
    return None


class _RowFile:
    """Rows of a ``uint16`` ``.npy`` read with plain file reads: unlike a memory map, the rows read do not stay
    mapped into the process (mapped pages count as its memory; the OS page cache still keeps them warm)."""

    def __init__(self, path: Path) -> None:
        header = np.load(path, mmap_mode="r")  # for the data offset and shape only; no page is touched
        self.offset, self.shape = header.offset, header.shape
        self.row_bytes = int(np.prod(self.shape[1:])) * 2
        self.nbytes = self.row_bytes * self.shape[0]
        del header
        self.file = open(path, "rb", buffering=0)  # noqa: SIM115 (kept open for the run's reads)

    def rows(self, positions: np.ndarray) -> np.ndarray:
        out = np.empty((len(positions), *self.shape[1:]), dtype=np.uint16)
        for i, p in enumerate(positions):
            self.file.seek(self.offset + int(p) * self.row_bytes)
            self.file.readinto(memoryview(out[i]).cast("B"))
        return out


class TeacherCache:
    """Read side: ``cache(inputs) -> Features`` for a batch of training blocks, or None (run the live teacher)."""

    def __init__(self, path: Path, corpus: PackedCorpus) -> None:
        meta = json.loads((path / "meta.json").read_text())
        self.path, self.names, self.blocks = path, meta["arrays"], corpus.blocks
        self.index = np.asarray(corpus.train_index)
        self.arrays = {name: _RowFile(path / f"{name}.npy") for name in self.names}
        self.rows = {_row_key(np.asarray(self.blocks[b])): i for i, b in enumerate(self.index)}
        self.bytes = sum(a.nbytes for a in self.arrays.values())
        self.hits = self.misses = 0

    def _positions(self, ids: np.ndarray) -> np.ndarray | None:
        pos = [self.rows.get(_row_key(r)) for r in ids]
        if any(p is None for p in pos) or not all(np.array_equal(self.blocks[self.index[p]], r)
                                                 for p, r in zip(pos, ids, strict=True)):
            return None
        return np.asarray(pos)

    def __call__(self, inputs: dict[str, Tensor]) -> Features | None:
        ids = inputs["input_ids"]
        pos = self._positions(ids.detach().to("cpu", torch.int32).numpy())
        if pos is None:
            self.misses += 1
            return None
        self.hits += 1
        feats = Features()
        for name, array in self.arrays.items():
            t = torch.from_numpy(array.rows(pos)).view(torch.bfloat16)
            t = t.to(ids.device, non_blocking=True).float()
            if name == "logits":
                feats.logits = t
            else:
                kind, layer = name.rsplit("-", 1)
                getattr(feats, kind)[int(layer)] = t
        return feats


def _arrays(feats: Features, request: FeatureRequest) -> dict[str, Tensor]:
    """The requested tensors by file name (not the projections a tap captured only to compute attention from)."""
    out = {f"{kind}-{layer}": getattr(feats, kind)[layer] for kind in LAYERED for layer in sorted(getattr(request, kind))}
    if request.logits:
        out["logits"] = feats.logits
    return out


def open_teacher_cache(teacher: Teacher, request: FeatureRequest, corpus: PackedCorpus,
                       make_inputs: Callable[[Tensor], dict[str, Tensor]], *, root: Path, max_gb: float,
                       device: torch.device, build: bool = True) -> TeacherCache:
    """The cache of ``teacher``'s ``request`` features over ``corpus``'s training blocks, built first if missing
    (``build``: this process may build it; the others of a multi-process run wait and open it)."""
    probe = corpus.blocks[corpus.train_index[:1]]
    inputs = make_inputs(torch.as_tensor(np.asarray(probe), dtype=torch.long))
    key = hashlib.sha256(json.dumps({
        "version": CACHE_VERSION, "corpus": corpus.meta["key"], "teacher": teacher.fingerprint(),
        "request": _request_spec(request), "inputs": sorted(inputs),
        "train_index": hashlib.sha256(np.asarray(corpus.train_index, dtype=np.int64).tobytes()).hexdigest(),
    }, sort_keys=True).encode()).hexdigest()[:24]
    path = root / "teacher" / key
    if (path / "meta.json").is_file():
        log.info("teacher cache: reading %s", path)
        return TeacherCache(path, corpus)
    if not build:
        raise BertpressError(f"teacher cache {path} is missing: the main process should have built it")
    tap = FeatureTap(teacher.parts, request, truncate=True)
    try:
        shapes = {n: tuple(t.shape[1:]) for n, t in _arrays(teacher_forward(tap, **send_to_device(inputs, device)), request).items()}
        n = len(corpus.train_index)
        size = n * sum(math.prod(s) for s in shapes.values()) * 2
        log.warning("teacher cache: %.2f GB for %d blocks (%s) in bf16 at %s", size / 1e9, n,
                    ", ".join(f"{k} {list(v)}" for k, v in shapes.items()), path)
        if size > max_gb * 1e9:
            raise BertpressError(
                f"the teacher cache would take {size / 1e9:.1f} GB ({n} blocks x {size / n / 1e6:.2f} MB), over "
                f"train.teacher_cache_max_gb={max_gb:g}: raise it, cap data.max_blocks, or turn train.teacher_cache "
                "off")
        path.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(path.parent).free
        if free < size * 1.05:
            raise BertpressError(f"the teacher cache needs {size / 1e9:.1f} GB but {path.parent} has "
                                 f"{free / 1e9:.1f} GB free: free disk space, set data.cache_dir elsewhere, or turn "
                                 "train.teacher_cache off")
        began = time.perf_counter()
        with atomic_dir(path) as tmp:
            out = {name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=np.uint16, shape=(n, *s))
                   for name, s in shapes.items()}
            bar = tqdm(total=n, desc="teacher cache", unit="block", disable=not bars_enabled())
            for start in range(0, n, _BUILD_BATCH):
                rows = corpus.train_index[start:start + _BUILD_BATCH]
                ids = torch.as_tensor(np.asarray(corpus.blocks[rows]), dtype=torch.long)
                feats = teacher_forward(tap, **send_to_device(make_inputs(ids), device))
                for name, t in _arrays(feats, request).items():
                    out[name][start:start + len(rows)] = (t.to(torch.bfloat16).view(torch.int16).cpu().numpy()
                                                          .view(np.uint16))
                bar.update(len(rows))
            bar.close()
            for array in out.values():
                array.flush()
            atomic_write_json(tmp / "meta.json", {"version": CACHE_VERSION, "blocks": n, "bytes": size,
                                                  "build_seconds": round(time.perf_counter() - began, 2),
                                                  "arrays": list(shapes), "shapes": {k: list(v) for k, v in
                                                                                    shapes.items()}})
    finally:
        tap.close()
    return TeacherCache(path, corpus)

