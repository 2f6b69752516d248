"""Per-task recipes, their overrides, and task-name parsing."""

import pytest

from bertpress.errors import BertpressError
from bertpress.evaluate.settings import resolve_settings
from bertpress.evaluate.tasks import parse_tasks


def test_task_names_and_groups():
    assert parse_tasks(["SST-2", "CoNLL-2003", "sst2"]) == ["sst2", "conll2003"]
    assert parse_tasks(["rte", "glue"]) == ["rte", "cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "wnli"]
    with pytest.raises(BertpressError, match="^unknown task 'imdb': choose from cola, sst2"):
        parse_tasks(["imdb"])


def test_defaults_and_overrides():
    s = resolve_settings(["rte", "sst2", "squad"])
    assert (s["rte"].epochs, s["rte"].seeds, s["sst2"].seeds, s["squad"].max_length) == (3, [1, 2, 3], [1], 384)
    assert (s["squad"].epochs, s["squad"].doc_stride) == (2, 128)
    # measured: 3-layer students are under-trained at 3 epochs on STS-B and CoLA (benchmarks/quality, schedule)
    longer = resolve_settings(["stsb", "cola", "mrpc"])
    assert [longer[t].epochs for t in ("stsb", "cola", "mrpc")] == [6, 6, 3]
    s = resolve_settings(["rte", "sst2", "squad"], ["lr=3e-5", "rte.epochs=10", "doc_stride=64", "seeds=[7, 8]",
                                                     "sst2.lr_grid=[1e-5, 2e-5]"])
    assert [s[t].lr for t in ("rte", "sst2", "squad")] == [3e-5] * 3
    assert (s["rte"].epochs, s["sst2"].epochs, s["squad"].doc_stride) == (10, 3, 64)
    assert s["sst2"].learning_rates == [1e-5, 2e-5] and s["rte"].learning_rates == [3e-5]
    assert s["rte"].seeds == [7, 8]
    key = s["rte"].run_key(3e-5, 7)
    assert key["lr"] == 3e-5 and key["seed"] == 7 and "seeds" not in key and "lr_grid" not in key


@pytest.mark.parametrize("override, message", [
    ("lr=-1", "settings of rte: lr: Input should be greater than 0 (got -1): use a larger value"),
    ("doc_stride=8", "--set doc_stride=8: no selected task has a setting 'doc_stride': choose from"),
    ("rte.epochz=2", "settings of rte: epochz: Extra inputs are not permitted"),
    ("squad.epochs=2", "--set squad.epochs=2: task 'squad' is not evaluated: add it to --tasks"),
    ("imdb.epochs=2", "--set imdb.epochs=2: unknown task 'imdb'"),
    ("epochs", "override 'epochs' is not KEY=VALUE"),
])
def test_override_errors(override, message):
    with pytest.raises(BertpressError) as e:
        resolve_settings(["rte"], [override])
    assert str(e.value).startswith(message)
