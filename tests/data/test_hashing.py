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
