"""Metrics against hand-computed values: GLUE, the SQuAD normaliser and EM/F1 (v1.1 and v2.0), seqeval NER."""

import math

import pytest

from bertpress.evaluate.metrics import (
    glue_metrics,
    ner_metrics,
    normalize_answer,
    squad_v1_metrics,
    squad_v2_metrics,
    token_f1,
)


def test_glue_metrics_by_hand():
    preds, labels = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]  # TP 2, FP 1, TN 1, FN 1
    cola = glue_metrics("cola", preds, labels)
    assert cola["mcc"] == pytest.approx(100 * (2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))  # 1/6
    assert cola["score"] == cola["mcc"]
    mrpc = glue_metrics("mrpc", preds, labels)
    assert mrpc == pytest.approx({"f1": 200 / 3, "accuracy": 60.0, "score": (200 / 3 + 60) / 2})
    assert glue_metrics("rte", preds, labels) == pytest.approx({"accuracy": 60.0, "score": 60.0})
    stsb = glue_metrics("stsb", [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0])
    pearson = 100 * 6.5 / math.sqrt(5 * 8.75)  # centred cross products / norms
    assert stsb == pytest.approx({"pearson": pearson, "spearman": 100.0, "score": (pearson + 100) / 2})


def test_squad_normaliser():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("Theater of the Absurd") == "theater of absurd"
    assert normalize_answer("U.S. $5") == "us 5"
    assert normalize_answer("the") == ""


def test_squad_token_f1_and_v1():
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)  # P 2/2, R 2/3
    assert token_f1("dog", "cat") == 0.0
    gold = {"q1": ["Denver Broncos", "the Broncos"], "q2": ["1990"], "q3": ["Paris"]}
    preds = {"q1": "broncos", "q2": "in 1990"}  # q3 unanswered counts as 0
    assert squad_v1_metrics(gold, preds) == pytest.approx(
        {"exact_match": 100 / 3, "f1": 100 * (1 + 2 / 3) / 3, "score": 100 * (1 + 2 / 3) / 3})


def test_squad_v2_with_no_answer_and_best_threshold():
    gold = {"qa": ["Paris"], "qb": [], "qc": ["blue whale"]}
    final = {"qa": "Paris", "qb": "", "qc": ""}
    margins = {"qa": -2.0, "qb": 3.0, "qc": 0.5}  # null score minus best span score
    non_null = {"qa": "Paris", "qb": "London", "qc": "whale"}
    m = squad_v2_metrics(gold, final, na_scores=margins, best_non_null=non_null)
    assert m["exact"] == pytest.approx(200 / 3) and m["f1"] == pytest.approx(200 / 3) and m["score"] == m["f1"]
    assert (m["HasAns_exact"], m["NoAns_exact"], m["HasAns_total"], m["NoAns_total"]) == (50.0, 100.0, 2.0, 1.0)
    # sweep: all null = 1 (qb); answer qa (+1) -> 2; answer qc (+2/3 F1, +0 EM); answer qb (-1)
    assert m["best_f1"] == pytest.approx(100 * (2 + 2 / 3) / 3) and m["best_f1_thresh"] == 0.5
    assert m["best_exact"] == pytest.approx(200 / 3) and m["best_exact_thresh"] == -2.0
    # gold answers that normalise to nothing are dropped, so "the" expects the empty answer
    assert squad_v2_metrics({"q": ["the"]}, {"q": ""})["exact"] == 100.0


def test_ner_entity_level():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-ORG"]]
    # gold entities PER, LOC, ORG(0-1); predicted PER, ORG(3), ORG(0), ORG(1): 1 correct of 4 predicted, 3 gold
    m = ner_metrics(gold, pred)
    assert m["precision"] == pytest.approx(25.0) and m["recall"] == pytest.approx(100 / 3)
    assert m["f1"] == pytest.approx(100 * 2 * 0.25 * (1 / 3) / (0.25 + 1 / 3)) and m["score"] == m["f1"]
    assert m["accuracy"] == pytest.approx(100 * 4 / 6)
    # an entity opened by I- (IOB1) is one entity, as in conlleval
    assert ner_metrics([["O", "I-MISC", "I-MISC"]], [["O", "B-MISC", "I-MISC"]])["f1"] == 100.0
