"""The readers on the shipped data (../shared/data): the row counts its README documents."""

import pytest

from bertpress.evaluate.tasks import load_task

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("task, train, dev", [
    ("rte", 2490, 277), ("mrpc", 3668, 408), ("stsb", 5749, 1500), ("cola", 8551, 1043), ("sst2", 67349, 872),
    ("conll2003", 14041, 3250), ("squad", 87599, 10570),
])
def test_shipped_data_reads_completely(data_dir, task, train, dev):
    data = load_task(task, data_dir, "tsv")
    assert (len(data.train), len(data.dev["dev"])) == (train, dev)
    if task == "conll2003":
        assert data.labels == ("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER")
    if task == "mrpc":
        assert sum(e.label for e in data.dev["dev"]) == 279  # 68.4% positive, as published
