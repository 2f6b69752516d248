"""Data-file identity in cache keys follows content, not path or modification time."""

import os
import shutil

from bertpress.data.tasks.files import file_identity


def test_identity_survives_copy_and_touch_but_not_an_edit(tmp_path):
    a = tmp_path / "a" / "train.tsv"
    a.parent.mkdir()
    a.write_text("sentence\tlabel\nhello\t1\n")
    before = file_identity(a)
    b = tmp_path / "b" / "train.tsv"
    b.parent.mkdir()
    shutil.copy(a, b)
    os.utime(b, (1, 1))
    assert file_identity(b) == before
    os.utime(a, (2, 2))
    assert file_identity(a) == before
    a.write_text("sentence\tlabel\nhello\t0\n")
    assert file_identity(a) != before


def test_digests_kept_on_disk_are_read_by_other_processes_until_the_file_changes(tmp_path, monkeypatch):
    """What another rank of ``accelerate launch`` (or a later run) sees: the digest comes from the memo directory,
    the file is not read again; an edit (new size or time) is hashed afresh."""
    from bertpress import hashing

    text = tmp_path / "corpus.txt"
    text.write_text("one line\n")
    memo = tmp_path / "digests"
    first = hashing.file_digest(text, memo)
    assert first == hashing.file_digest(text) and len(list(memo.iterdir())) == 1
    hashing._digest.cache_clear()  # a fresh process: nothing in memory
    monkeypatch.setattr(hashing, "update_with_file", lambda *a: (_ for _ in ()).throw(AssertionError("re-read")))
    assert hashing.file_digest(text, memo) == first
    monkeypatch.undo()
    text.write_text("another line\n")
    assert hashing.file_digest(text, memo) != first and len(list(memo.iterdir())) == 2
