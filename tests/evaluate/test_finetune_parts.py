"""The pieces of fine-tuning: batching and padding, subsets, SQuAD windows and span decoding, NER word labels."""

import numpy as np
import pytest
import torch

from bertpress.data.tasks.conll import TaggedSentence
from bertpress.data.tasks.squad import SquadExample
from bertpress.evaluate.finetune import IGNORE, collate, fixed_subset, length_grouped_batches
from bertpress.evaluate.ner import encode as ner_encode
from bertpress.evaluate.qa import decode, windows
from bertpress.evaluate.settings import SquadSettings

from tiny_models import tiny_tokenizer


def test_collate_pads_and_masks():
    batch = collate([{"input_ids": [2, 5, 3], "labels": [IGNORE, 1, IGNORE], "start_positions": 1},
                     {"input_ids": [2, 3], "labels": [IGNORE, IGNORE], "start_positions": 0}], pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 1, IGNORE], [IGNORE, IGNORE, IGNORE]]
    assert batch["start_positions"].tolist() == [1, 0]
    regression = collate([{"input_ids": [1], "labels": 3.5}], pad_id=0)
    assert regression["labels"].dtype == torch.float32


def test_length_grouped_batches_cover_every_example_once():
    lengths = np.random.default_rng(0).integers(1, 100, size=1000)
    batches = length_grouped_batches(lengths, 8, np.random.default_rng(3))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    again = length_grouped_batches(lengths, 8, np.random.default_rng(3))
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches if len(b) == 8])
    assert spread < 10, "batches group similar lengths (random batches would spread ~70)"


def test_fixed_subset_is_stable_and_ordered():
    items = list(range(100))
    sub = fixed_subset(items, 10)
    assert sub == sorted(sub) and len(set(sub)) == 10 and fixed_subset(items, 10) == sub
    assert fixed_subset(items, None) == items and fixed_subset(items, 500) == items


def test_squad_windows_target_the_answer_and_decode_it_back():
    tok = tiny_tokenizer()
    context = ("the city was built on the river in the north of the world during the war and it was known as a "
               "small city of music and film with a school for people who played in the team and it had a large church")
    start = context.index("large church")
    ex = SquadExample("q1", "t", context, " where was the church?", (("large church", start),))
    s = SquadSettings(max_length=32, doc_stride=8, epochs=1)
    win = windows([ex], tok, s)
    assert len(win.features) > 1, "the context is split into several windows"
    hits = [(i, f) for i, f in enumerate(win.features) if f["start_positions"]]
    assert hits, "some window contains the answer"
    for i, f in hits:
        a, b = win.offsets[i][f["start_positions"]][0], win.offsets[i][f["end_positions"]][1]
        assert context[a:b] == "large church"
    missing = [f for f in win.features if not f["start_positions"]]
    assert all(f["end_positions"] == 0 for f in missing), "windows without the answer point at [CLS]"
    # hand-made logits: favour the answer span in the window that has it, a junk span elsewhere
    w, f = hits[0]
    starts = [np.full(len(x["input_ids"]), -5.0) for x in win.features]
    ends = [np.full(len(x["input_ids"]), -5.0) for x in win.features]
    starts[w][f["start_positions"]], ends[w][f["end_positions"]] = 4.0, 3.0
    starts[w][0] = ends[w][0] = 1.0
    answers, margins = decode([ex], win, starts, ends, s)
    # the null score is the lowest [CLS] score over the windows (-10 in the others), the best span scores 7
    assert answers == {"q1": "large church"} and margins["q1"] == pytest.approx(-10.0 - 7.0)
    # a span longer than max_answer_length is never chosen
    short = SquadSettings(max_length=32, doc_stride=8, max_answer_length=1)
    assert decode([ex], win, starts, ends, short)[0]["q1"] != "large church"


def test_ner_labels_first_subword_and_truncation():
    tok = tiny_tokenizer()
    sentence = TaggedSentence(("paris", "city", "xyz"), ("B-LOC", "O", "B-MISC"))
    features, words = ner_encode([sentence], tok, 64, {"O": 0, "B-LOC": 1, "B-MISC": 2})
    ids, labels = features[0]["input_ids"], features[0]["labels"]
    assert len(ids) == len(labels) == len(words[0])
    firsts = [i for i, w in enumerate(words[0]) if w is not None and (i == 0 or words[0][i - 1] != w)]
    assert [labels[i] for i in firsts] == [1, 0, 2]
    assert all(labels[i] == IGNORE for i in range(len(labels)) if i not in firsts)
    cut, cut_words = ner_encode([sentence], tok, 4, {"O": 0, "B-LOC": 1, "B-MISC": 2})
    assert len(cut[0]["input_ids"]) == 4
    assert max(w for w in cut_words[0] if w is not None) < 2, "words past max_length are dropped"


def test_squad2_null_threshold_decides_no_answer(tmp_path, tiny_pair):
    from bertpress.evaluate.finetune import load_model
    from bertpress.evaluate.qa import SquadRunner
    from bertpress.evaluate.tasks import TASKS, TaskData

    context = "the river was known as the large river of the north"
    dev = [SquadExample("a", "t", context, "which river?", (("large river", context.index("large river")),)),
           SquadExample("b", "t", context, "who won?", (), is_impossible=True)]
    runner = SquadRunner(TaskData(TASKS["squad2"], [], {"dev": dev}, None))
    tok = tiny_tokenizer()
    model = load_model(tiny_pair[1], runner.auto_class)
    always_null = runner.evaluate(model, tok, SquadSettings(max_length=64, doc_stride=16, null_threshold=-1e9), progress=False)
    assert (always_null["HasAns_exact"], always_null["NoAns_exact"], always_null["exact"]) == (0.0, 100.0, 50.0)
    never_null = runner.evaluate(model, tok, SquadSettings(max_length=64, doc_stride=16, null_threshold=1e9), progress=False)
    assert never_null["NoAns_exact"] == 0.0 and {"best_f1", "best_f1_thresh"} <= set(never_null)
