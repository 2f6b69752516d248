"""Tokenise the corpus once, pack it into fixed-length blocks, cache it, and split off a held-out set.

Blocks are ``[CLS] t_1 … t_{n-2} [SEP]`` over the concatenated token stream, with ``[SEP]`` between documents.
The cache key covers the sources (file names and content hashes, or the dataset spec), the tokenizer's full serialisation
and the block size, so a second run with the same inputs reads a memory-mapped ``.npy`` instead of re-tokenising.
Building streams: text is read and tokenised in batches and blocks are written to disk as they fill, so memory stays
bounded (a few MB of packing buffers) however large the corpus; batches are tokenised on every core
(:func:`parallel_tokenisation`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from bertpress.atomic import atomic_write_json
from bertpress.data.examples import INPUT_TASKS, encode_units, task_identity, task_inputs, text_units
from bertpress.data.sources import ReadStats, expand_files, load_hf_dataset, read_dataset, read_files
from bertpress.errors import BertpressError
from bertpress.hashing import file_digest
from bertpress.progress import bars_enabled

log = logging.getLogger(__name__)

CACHE_VERSION = 1
_TOKENIZE_BATCH = 2000
PARALLELISM_ENV = "TOKENIZERS_PARALLELISM"

#: Held-out blocks are drawn with this fixed seed, so every run on a corpus validates on the same blocks.
SPLIT_SEED = 1234


@dataclass
class PackedCorpus:
    """Packed blocks (``int32 [n, block_size]``, usually memory-mapped), the training and held-out block indices,
    and how they were made; ``labels`` (per row, or per token) for labelled examples."""

    blocks: np.ndarray
    train_index: np.ndarray
    valid_index: np.ndarray
    meta: dict[str, Any]
    labels: np.ndarray | None = None

    @property
    def block_size(self) -> int:
        return int(self.blocks.shape[1])

    @property
    def valid(self) -> np.ndarray:
        return np.asarray(self.blocks[self.valid_index])


def default_cache_dir() -> Path:
    env = os.environ.get("BERTPRESS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "bertpress"


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of everything that decides token ids (the fast tokenizer's JSON, or the vocabulary)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # padding/truncation settings change with each call and do not affect ids
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        blob = json.dumps(state, sort_keys=True)
    else:
        blob = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _is_task(source: Any) -> bool:
    return hasattr(source, "task")


def _source_identity(source: Any, memo: Path | None = None) -> Any:
    if isinstance(source, str):
        return [[p.name, file_digest(p, memo)] for p in expand_files(source)]
    if _is_task(source):
        return task_identity(source)
    # an unpinned hub dataset keeps the key it had before ``revision`` existed; streaming reads the same rows
    return source.model_dump(exclude={"streaming"} | ({"revision"} if source.revision is None else set()))


def cache_key(sources: list[Any], tokenizer, block_size: int, text_field: str, encoding: str = "utf-8",
              unit: str = "blocks", memo: Path | None = None) -> str:
    """The corpus cache's key; ``memo``: where file digests are kept on disk (see :func:`file_digest`)."""
    ident = {"v": CACHE_VERSION, "sources": [_source_identity(s, memo) for s in sources], "text_field": text_field,
             "tokenizer": tokenizer_fingerprint(tokenizer), "block_size": block_size}
    if encoding != "utf-8":  # (absent for the defaults, so caches made before the options stay valid)
        ident["encoding"] = encoding
    if unit != "blocks":
        ident["unit"] = unit
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def iter_segments(sources: list[Any], text_field: str, stats: ReadStats, encoding: str = "utf-8"
                  ) -> Iterator[str | None]:
    for source in sources:
        if isinstance(source, str):
            yield from read_files(source, text_field, stats, encoding)
        elif _is_task(source):  # a task's training inputs, one document each (a pair's two texts as two lines)
            for a, b in task_inputs(source):
                stats.lines += 1
                yield from (a, b, None) if b is not None else (a, None)
        else:
            ds = load_hf_dataset(source.dataset, source.config, source.split, source.revision,
                                 streaming=source.streaming)
            yield from read_dataset(ds, source.text_field, stats, name=source.dataset,
                                    setting=f"text_field of data source {source.dataset!r}")


def _batched(segments: Iterator[str | None], size: int) -> Iterator[list[str | None]]:
    batch: list[str | None] = []
    for seg in segments:
        batch.append(seg)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def pack(token_stream: Iterator[list[int]], block_size: int, cls_id: int, sep_id: int,
         chunk_blocks: int = 4096) -> Iterator[np.ndarray]:
    """Pack a stream of id chunks into ``[CLS] … [SEP]`` blocks, yielded ``int32 [k, block_size]`` at most about
    ``chunk_blocks`` at a time (memory stays bounded by that, whatever the corpus size); the trailing partial block
    is dropped."""
    body = block_size - 2
    pending = np.empty(0, dtype=np.int32)
    chunks: list[list[int]] = []
    buffered = 0

    def blocks_of(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(flat) // body
        out = np.empty((n, block_size), dtype=np.int32)
        out[:, 0], out[:, -1] = cls_id, sep_id
        out[:, 1:-1] = flat[: n * body].reshape(n, body)
        return out, flat[n * body:]

    for chunk in token_stream:
        chunks.append(chunk)
        buffered += len(chunk)
        if buffered >= chunk_blocks * body:
            flat = np.concatenate([pending, np.fromiter(itertools.chain.from_iterable(chunks), dtype=np.int32)])
            out, pending = blocks_of(flat)
            chunks, buffered = [], 0
            yield out
    flat = np.concatenate([pending, np.fromiter(itertools.chain.from_iterable(chunks), dtype=np.int32)])
    out, _ = blocks_of(flat)
    if len(out):
        yield out


def write_npy(blocks: Iterator[np.ndarray], path: Path, block_size: int) -> int:
    """Write streamed blocks to ``path`` as one ``.npy`` (through a raw temporary file, then the header and a copy in
    slices: memory stays at one slice); nothing appears at ``path`` unless there is at least one block. Returns the
    number of blocks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, raw = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".raw", dir=path.parent)
    tmp = Path(f"{raw[:-4]}.npy.tmp")
    try:
        n = 0
        with os.fdopen(fd, "wb") as f:
            for b in blocks:
                f.write(b.tobytes())
                n += len(b)
        if n:  # the .npy header, then the raw bytes copied in slices (plain I/O: no mapped pages count as memory)
            with open(tmp, "wb") as out, open(raw, "rb") as src:
                np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int32)),
                                                           "fortran_order": False, "shape": (n, block_size)})
                shutil.copyfileobj(src, out, 4 << 20)
            os.replace(tmp, path)
        return n
    finally:
        Path(raw).unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


def tokenize_segments(segments: Iterator[str | None], tokenizer, sep_id: int) -> Iterator[list[int]]:
    """Token ids of each text segment; a document boundary becomes one ``[SEP]`` (never two in a row)."""
    last_was_sep = True
    for batch in _batched(segments, _TOKENIZE_BATCH):
        texts = [s for s in batch if s is not None]
        encoded = iter(tokenizer(texts, add_special_tokens=False, return_attention_mask=False,
                                 return_token_type_ids=False, verbose=False)["input_ids"]) if texts else iter(())
        for seg in batch:
            if seg is None:
                if not last_was_sep:
                    yield [sep_id]
                    last_was_sep = True
            else:
                ids = next(encoded)
                if ids:
                    yield ids
                    last_was_sep = False


def build_blocks(sources: list[Any], tokenizer, block_size: int, text_field: str, path: Path,
                 encoding: str = "utf-8") -> tuple[int, ReadStats]:
    """Tokenise ``sources`` and write their packed blocks to ``path`` (``.npy``), streaming; returns (blocks, stats)."""
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise BertpressError("the tokenizer has no CLS/SEP tokens: use a BERT-family tokenizer")
    stats = ReadStats()
    segments = tqdm(iter_segments(sources, text_field, stats, encoding), desc="tokenising", unit=" lines", mininterval=2,
                    disable=not bars_enabled())
    n = write_npy(pack(tokenize_segments(segments, tokenizer, tokenizer.sep_token_id), block_size,
                       tokenizer.cls_token_id, tokenizer.sep_token_id), path, block_size)
    if stats.files == 0 and stats.skipped_files and not any(not isinstance(s, str) for s in sources):
        path.unlink(missing_ok=True)
        raise BertpressError(
            f"every corpus file was skipped as binary or unreadable ({len(stats.skipped_files)}: "
            f"{stats.skipped_files[0]}, ...): point data.sources at UTF-8 text, JSONL or .gz files"
        )
    return n, stats


def build_examples(sources: list[Any], tokenizer, block_size: int, text_field: str, path: Path,
                   encoding: str = "utf-8", unit: str = "sentences") -> tuple[int, ReadStats]:
    """Sentence-level examples (:mod:`bertpress.data.examples`) of ``sources`` written to ``path``; a ``{task:
    NAME}`` source adds its training inputs as they are (pairs stay pairs). Returns (examples, stats)."""
    stats = ReadStats()

    def units() -> Iterator[tuple[str, str | None]]:
        for source in sources:
            if _is_task(source):
                for u in task_inputs(source):
                    stats.lines += 1
                    yield u
            else:
                yield from text_units(iter_segments([source], text_field, stats, encoding), unit)

    bar = tqdm(units(), desc="tokenising", unit=" examples", mininterval=2, disable=not bars_enabled())
    return write_npy(encode_units(bar, tokenizer, block_size), path, block_size), stats


@contextlib.contextmanager
def parallel_tokenisation() -> Iterator[None]:
    """Batch encoding on every core (the fast tokenizer's Rust threads) while a corpus is tokenised, unless
    ``TOKENIZERS_PARALLELISM`` was set by the user; afterwards it reads ``false``, so processes forked later (data
    loader workers) neither reuse the forked thread pool nor warn about it."""
    user = os.environ.get(PARALLELISM_ENV)
    os.environ[PARALLELISM_ENV] = user or "true"
    try:
        yield
    finally:
        os.environ[PARALLELISM_ENV] = user or "false"


def split_indices(index: np.ndarray, fraction: float, max_valid: int, block_size: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``min(max_valid, round(fraction·n))`` (at least 1) of the blocks in ``index``, drawn with
    :data:`SPLIT_SEED`; returns sorted (train, valid) block indices."""
    n = len(index)
    if n < 2:
        raise BertpressError(
            f"the corpus packs into {n} block(s) of {block_size} tokens, too few to train and validate: "
            "add text or lower data.block_size"
        )
    n_valid = max(1, min(max_valid, round(fraction * n), n - 1))
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    return np.sort(index[order[n_valid:]]), np.sort(index[order[:n_valid]])


def load_corpus(data, tokenizer, *, seed: int = 0, cache_dir: str | Path | None = None) -> PackedCorpus:
    """Tokenised, packed, cached and split corpus for a recipe's ``data`` section."""
    cache = Path(cache_dir or data.cache_dir or default_cache_dir()) / "corpus"
    for s in data.sources:
        if _is_task(s) and s.task not in INPUT_TASKS:
            raise BertpressError(f"data source {{task: {s.task}}}: unknown task: choose one of {', '.join(INPUT_TASKS)}")
    key = cache_key(data.sources, tokenizer, data.block_size, data.text_field, data.encoding, data.unit,
                    memo=cache / "digests")
    npy, meta_path = cache / f"{key}.npy", cache / f"{key}.json"
    if npy.is_file() and meta_path.is_file():
        blocks = np.load(npy, mmap_mode="r")
        meta = json.loads(meta_path.read_text())
        log.info("corpus: %d blocks from cache %s", len(blocks), npy)
    else:
        build = build_blocks if data.unit == "blocks" else partial(build_examples, unit=data.unit)
        with parallel_tokenisation():
            n, stats = build(data.sources, tokenizer, data.block_size, data.text_field, npy, data.encoding)
        if n == 0:
            if stats.skipped_lines:
                raise BertpressError(
                    f"the corpus is empty: {stats.lines} text lines read and {stats.skipped_lines} skipped as not "
                    f"{data.encoding}: set data.encoding to the files' encoding (e.g. latin-1, cp1252)")
            raise BertpressError(
                f"the corpus is empty ({stats.lines} text lines read, {len(stats.skipped_files)} files skipped): "
                "point data.sources at non-empty text"
            )
        meta = {"key": key, "sources": [s if isinstance(s, str) else s.model_dump() for s in data.sources],
                "unit": data.unit, "blocks": n, "block_size": data.block_size,
                "tokens": n * data.block_size if data.unit == "blocks" else int((np.load(npy, mmap_mode="r")
                                                                                 != tokenizer.pad_token_id).sum()),
                "files": stats.files, "lines": stats.lines, "skipped_files": stats.skipped_files,
                "skipped_lines": stats.skipped_lines}
        atomic_write_json(meta_path, meta)
        blocks = np.load(npy, mmap_mode="r")
        if stats.skipped_files or stats.skipped_lines:
            log.warning("corpus: skipped %d binary files and %d lines not in %s (set data.encoding if the text is "
                        "in another encoding)", len(stats.skipped_files), stats.skipped_lines, data.encoding)
        log.info("corpus: %d blocks of %d tokens (cached at %s)", len(blocks), data.block_size, npy)
    index = np.arange(len(blocks))
    if data.max_blocks is not None and data.max_blocks < len(blocks):
        index = np.sort(np.random.default_rng(seed).choice(len(blocks), data.max_blocks, replace=False))
    train, valid = split_indices(index, data.validation_fraction, data.max_validation_blocks, data.block_size)
    return PackedCorpus(blocks, train, valid, {**meta, "train_blocks": len(train), "valid_blocks": len(valid)})
