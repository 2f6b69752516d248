import gzip
import json
import os

import numpy as np
import pytest
import torch

from bertpress.data import corpus as corpus_mod
from bertpress.data.corpus import load_corpus, pack, tokenize_segments
from bertpress.data.masking import mask_tokens
from bertpress.data.sources import ReadStats, read_files
from bertpress.errors import BertpressError
from bertpress.recipe import DataSpec

from tiny_models import tiny_tokenizer


def _spec(tmp_path, sources, **kw):
    return DataSpec(sources=[str(s) for s in sources], cache_dir=str(tmp_path / "cache"), **kw)


def test_wikiextractor_markup_and_gzip_and_jsonl(tmp_path):
    (tmp_path / "wiki_00.gz").write_bytes(gzip.compress(
        b'<doc id="1" url="u" title="The City">\nThe City\n\nthe city was new.\n</doc>\n<doc id="2">\nRiver\n</doc>\n'))
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "first line\nsecond line"}) + "\n")
    stats = ReadStats()
    segs = list(read_files(str(tmp_path / "wiki_00.gz"), "text", stats)) + \
        list(read_files(str(tmp_path / "c.jsonl"), "text", stats))
    texts = [s for s in segs if s is not None]
    assert texts == ["The City", "the city was new.", "River", "first line", "second line"]
    assert not any(s and s.startswith("<") for s in texts)
    assert stats.files == 2 and stats.lines == 5


def test_packing_puts_cls_sep_and_separates_documents():
    tok = tiny_tokenizer()
    sep, cls = tok.sep_token_id, tok.cls_token_id
    chunks = list(tokenize_segments(iter(["the city", None, None, "a river"]), tok, sep))
    flat = [t for c in chunks for t in c]
    assert flat.count(sep) == 1, "consecutive boundaries give one separator"
    blocks = np.concatenate(list(pack(iter(chunks), 4, cls, sep)))
    assert blocks.shape == (len(flat) // 2, 4)
    assert (blocks[:, 0] == cls).all() and (blocks[:, -1] == sep).all()
    assert blocks[:, 1:-1].ravel().tolist() == flat[: blocks.shape[0] * 2]


def test_streamed_packing_equals_one_pass_and_stays_within_its_chunk(tmp_path):
    """Chunked packing gives the same blocks as packing the whole stream at once, and writing them to disk never
    holds the corpus in memory (peak traced allocation far below its size)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    chunks = [rng.integers(5, 90, rng.integers(1, 40)).tolist() for _ in range(3000)]
    whole = np.concatenate(list(pack(iter(chunks), 16, 2, 3, chunk_blocks=10**9)))
    pieces = list(pack(iter(chunks), 16, 2, 3, chunk_blocks=7))
    assert len(pieces) > 100 and max(len(p) for p in pieces) <= 7 + 40 // 14 + 1  # a chunk plus one segment
    np.testing.assert_array_equal(np.concatenate(pieces), whole)

    def stream():  # 400k blocks of 64 tokens: 102 MB as int32
        for i in range(400_000 * 62 // 1000):
            yield list(range(i % 50, i % 50 + 1000))

    tracemalloc.start()
    n = corpus_mod.write_npy(pack(stream(), 64, 2, 3, chunk_blocks=1024), tmp_path / "c.npy", 64)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    saved = np.load(tmp_path / "c.npy", mmap_mode="r")
    assert n == len(saved) == 400_000 and saved.shape == (400_000, 64)
    assert (saved[:, 0] == 2).all() and (saved[:, -1] == 3).all()
    assert peak < 20e6, f"peak {peak / 1e6:.0f} MB for a 102 MB corpus"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npy"], "no temporary file left"
    assert corpus_mod.write_npy(iter(()), tmp_path / "empty.npy", 64) == 0 and not (tmp_path / "empty.npy").exists()


def test_cache_second_run_does_not_tokenise(tmp_path, tiny_corpus, monkeypatch):
    tok = tiny_tokenizer()
    first = load_corpus(_spec(tmp_path, [tiny_corpus], block_size=16), tok)
    monkeypatch.setattr(corpus_mod, "build_blocks", lambda *a, **k: pytest.fail("re-tokenised a cached corpus"))
    second = load_corpus(_spec(tmp_path, [tiny_corpus], block_size=16), tok)
    np.testing.assert_array_equal(first.blocks, second.blocks)
    np.testing.assert_array_equal(first.valid_index, second.valid_index)
    assert set(first.train_index).isdisjoint(first.valid_index)
    assert len(first.train_index) + len(first.valid_index) == len(first.blocks)


def test_cache_invalidated_when_file_changes(tmp_path, tiny_corpus):
    tok = tiny_tokenizer()
    path = tmp_path / "c.txt"
    path.write_text(tiny_corpus.read_text())
    n1 = len(load_corpus(_spec(tmp_path, [path], block_size=16), tok).blocks)
    path.write_text(tiny_corpus.read_text() * 2)
    assert len(load_corpus(_spec(tmp_path, [path], block_size=16), tok).blocks) >= 2 * n1 - 1


def test_binary_files_skipped_and_all_binary_refused(tmp_path, tiny_corpus):
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "ok.txt").write_text(tiny_corpus.read_text())
    c = load_corpus(_spec(tmp_path, [tmp_path / "blob.bin", tmp_path / "ok.txt"], block_size=16), tiny_tokenizer())
    assert c.meta["skipped_files"] == [str(tmp_path / "blob.bin")]
    with pytest.raises(BertpressError, match="every corpus file was skipped"):
        load_corpus(_spec(tmp_path, [tmp_path / "blob.bin"], block_size=16), tiny_tokenizer())


def test_bad_sources_errors(tmp_path):
    with pytest.raises(BertpressError, match="matched no files"):
        load_corpus(_spec(tmp_path, [tmp_path / "nope*.txt"]), tiny_tokenizer())
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(BertpressError, match="corpus is empty"):
        load_corpus(_spec(tmp_path, [tmp_path / "empty.txt"]), tiny_tokenizer())
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": broken\n')
    with pytest.raises(BertpressError, match=r"bad.jsonl:2: not a valid JSON line"):
        load_corpus(_spec(tmp_path, [tmp_path / "bad.jsonl"]), tiny_tokenizer())


def test_max_blocks_samples(tmp_path, tiny_corpus):
    c = load_corpus(_spec(tmp_path, [tiny_corpus], block_size=16, max_blocks=20), tiny_tokenizer(), seed=3)
    assert len(c.train_index) + len(c.valid_index) == 20


def test_masking_rates_and_determinism():
    ids = torch.randint(10, 1000, (64, 128))
    ids[:, 0] = 2
    special = torch.tensor([0, 1, 2, 3, 4])
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    masked, labels = mask_tokens(ids, mask_id=4, vocab_size=1000, special_ids=special, generator=gen())
    again, labels2 = mask_tokens(ids, mask_id=4, vocab_size=1000, special_ids=special, generator=gen())
    assert torch.equal(masked, again) and torch.equal(labels, labels2)
    selected = labels != -100
    assert not selected[:, 0].any(), "special tokens are never masked"
    rate = selected.float().mean().item()
    assert 0.14 < rate < 0.16
    assert torch.equal(labels[selected], ids[selected])
    as_mask = (masked[selected] == 4).float().mean().item()
    kept = (masked[selected] == ids[selected]).float().mean().item()
    assert 0.77 < as_mask < 0.83 and 0.08 < kept < 0.12
    assert torch.equal(masked[~selected], ids[~selected])


def test_hub_dataset_revision_is_part_of_the_cache_key():
    from bertpress.data.corpus import _source_identity, cache_key
    from bertpress.recipe import HubDataset

    tok = tiny_tokenizer()
    source = HubDataset(dataset="wikitext", config="wikitext-2-raw-v1")
    # an unpinned source is identified as before the revision field existed, so its cache entries stay valid
    assert _source_identity(source) == {"dataset": "wikitext", "config": "wikitext-2-raw-v1", "split": "train",
                                        "text_field": "text"}
    pinned = HubDataset(dataset="wikitext", config="wikitext-2-raw-v1", revision="abc123")
    assert cache_key([pinned], tok, 32, "text") != cache_key([source], tok, 32, "text")


@pytest.mark.parametrize("user", [None, "false", "true"])
def test_tokenisation_runs_on_every_core_unless_the_user_said_otherwise(tmp_path, tiny_corpus, monkeypatch, user):
    """While the corpus is tokenised TOKENIZERS_PARALLELISM is on (the user's own setting wins); afterwards it is
    false, so forked data-loader workers neither use the parent's thread pool nor print the fork warning."""
    if user is None:
        monkeypatch.delenv(corpus_mod.PARALLELISM_ENV, raising=False)
    else:
        monkeypatch.setenv(corpus_mod.PARALLELISM_ENV, user)
    seen = []
    build = corpus_mod.build_blocks
    monkeypatch.setattr(corpus_mod, "build_blocks",
                        lambda *a, **k: seen.append(os.environ[corpus_mod.PARALLELISM_ENV]) or build(*a, **k))
    load_corpus(_spec(tmp_path, [tiny_corpus], block_size=16), tiny_tokenizer())
    assert seen == [user or "true"]
    assert os.environ[corpus_mod.PARALLELISM_ENV] == (user or "false")


def test_datasets_are_read_in_batches_and_streams_read_the_same(monkeypatch):
    """A dataset's column is read batch by batch (never held whole), and a streamed copy gives the same segments."""
    import datasets

    from bertpress.data import sources

    monkeypatch.setattr(sources, "_DATASET_BATCH", 2)  # batch boundaries inside the rows
    rows = ["first doc line", "", " = Title = ", "second", "   ", "third"]
    table = datasets.Dataset.from_dict({"text": rows, "other": list(range(len(rows)))})
    got = {}
    for kind, ds in (("table", table), ("stream", table.to_iterable_dataset())):
        stats = ReadStats()
        got[kind] = (list(sources.read_dataset(ds, "text", stats)), stats.lines)
    assert got["table"] == got["stream"]
    assert got["table"] == (["first doc line", None, None, "= Title =", "second", None, "third", None], 4)
    stream = datasets.Dataset.from_dict({"body": ["x"]}).to_iterable_dataset()
    with pytest.raises(BertpressError, match="has no column 'text' \\(columns: body\\)"):
        list(sources.read_dataset(stream, "text", ReadStats()))


def test_hub_streaming_is_passed_on_and_keeps_the_cache_key(monkeypatch):
    import datasets

    from bertpress.data import sources
    from bertpress.data.corpus import cache_key
    from bertpress.recipe import HubDataset

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(k) or "ds")
    assert sources.load_hf_dataset("wikitext", "wikitext-2-raw-v1", "train", streaming=True) == "ds"
    assert calls[-1]["streaming"] is True
    tok = tiny_tokenizer()
    streamed = HubDataset(dataset="wikitext", config="wikitext-2-raw-v1", streaming=True)
    downloaded = HubDataset(dataset="wikitext", config="wikitext-2-raw-v1")
    assert cache_key([streamed], tok, 32, "text") == cache_key([downloaded], tok, 32, "text")
