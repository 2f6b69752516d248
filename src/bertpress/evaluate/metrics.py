"""Official downstream metrics, in percent: GLUE, SQuAD v1.1 / v2.0 (the official scripts' rules), seqeval NER F1.

Every metric dict carries a ``score`` entry: the task's single number for tables and averages. Tasks with two
metrics score their unweighted mean, as the GLUE benchmark does (MRPC and QQP: F1 and accuracy; STS-B: Pearson
and Spearman).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from seqeval.metrics import accuracy_score, precision_score, recall_score
from seqeval.metrics import f1_score as entity_f1
from sklearn.metrics import f1_score, matthews_corrcoef

# ---------------------------------------------------------------- GLUE


def glue_metrics(task: str, predictions: Sequence[float], labels: Sequence[float]) -> dict[str, float]:
    """GLUE dev metrics of ``task`` (class indices, or floats for ``stsb``), in percent."""
    p, y = np.asarray(predictions), np.asarray(labels)
    if task == "stsb":
        pearson, spearman = 100 * float(pearsonr(p, y)[0]), 100 * float(spearmanr(p, y)[0])
        return {"pearson": pearson, "spearman": spearman, "score": (pearson + spearman) / 2}
    accuracy = 100 * float((p == y).mean())
    if task == "cola":
        mcc = 100 * float(matthews_corrcoef(y, p))
        return {"mcc": mcc, "accuracy": accuracy, "score": mcc}
    if task in ("mrpc", "qqp"):
        f1 = 100 * float(f1_score(y, p, zero_division=0.0))
        return {"f1": f1, "accuracy": accuracy, "score": (f1 + accuracy) / 2}
    return {"accuracy": accuracy, "score": accuracy}


# ---------------------------------------------------------------- SQuAD

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """The official SQuAD normaliser: lower case, drop punctuation, drop articles, collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(prediction: str, gold: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1 after normalisation; two empty answers agree (SQuAD v2.0 rule), one empty scores 0."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_v1_metrics(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """SQuAD v1.1 EM and F1 over every gold question (a missing prediction scores 0), best over gold answers."""
    em = f1 = 0.0
    for qid, answers in gold.items():
        if qid in predictions:
            em += max(exact_match(predictions[qid], a) for a in answers)
            f1 += max(token_f1(predictions[qid], a) for a in answers)
    n = len(gold)
    return {"exact_match": 100 * em / n, "f1": 100 * f1 / n, "score": 100 * f1 / n}


def _best_threshold(scores: dict[str, float], has_answer: dict[str, bool], answered: dict[str, bool],
                    na_scores: Mapping[str, float]) -> tuple[float, float]:
    """The official v2.0 sweep: predict "no answer" when the null score exceeds a threshold; best total score."""
    current = best = float(sum(not h for h in has_answer.values()))
    best_threshold = 0.0
    for qid in sorted(scores, key=lambda q: na_scores[q]):
        if has_answer[qid]:
            current += scores[qid]
        elif answered[qid]:
            current -= 1
        if current > best:
            best, best_threshold = current, na_scores[qid]
    return 100 * best / len(scores), best_threshold


def squad_v2_metrics(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str],
                     na_scores: Mapping[str, float] | None = None,
                     best_non_null: Mapping[str, str] | None = None) -> dict[str, float]:
    """SQuAD v2.0 metrics as the official script computes them: ``exact``/``f1`` over all questions,
    ``HasAns_*``/``NoAns_*`` on each half, and, given each question's null-score margin (``na_scores``) and best
    non-null answer, ``best_exact``/``best_f1`` with the thresholds that reach them. Gold answers that normalise to
    nothing are dropped; a question without gold answers expects the empty string.
    """
    golds = {q: [a for a in answers if normalize_answer(a)] or [""] for q, answers in gold.items()}
    has_answer = {q: g != [""] for q, g in golds.items()}
    exact = {q: float(max(exact_match(predictions.get(q, ""), a) for a in g)) for q, g in golds.items()}
    f1 = {q: max(token_f1(predictions.get(q, ""), a) for a in g) for q, g in golds.items()}
    out: dict[str, float] = {"exact": 100 * float(np.mean(list(exact.values()))),
                             "f1": 100 * float(np.mean(list(f1.values())))}
    for name, keep in (("HasAns", True), ("NoAns", False)):
        qids = [q for q in golds if has_answer[q] == keep]
        if qids:
            out[f"{name}_exact"] = 100 * float(np.mean([exact[q] for q in qids]))
            out[f"{name}_f1"] = 100 * float(np.mean([f1[q] for q in qids]))
            out[f"{name}_total"] = float(len(qids))
    if na_scores is not None and best_non_null is not None:
        answered = {q: bool(best_non_null.get(q, "")) for q in golds}
        raw_exact = {q: float(max(exact_match(best_non_null.get(q, ""), a) for a in g)) for q, g in golds.items()}
        raw_f1 = {q: max(token_f1(best_non_null.get(q, ""), a) for a in g) for q, g in golds.items()}
        out["best_exact"], out["best_exact_thresh"] = _best_threshold(raw_exact, has_answer, answered, na_scores)
        out["best_f1"], out["best_f1_thresh"] = _best_threshold(raw_f1, has_answer, answered, na_scores)
    out["score"] = out["f1"]
    return out


# ---------------------------------------------------------------- NER


def ner_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 (seqeval's conlleval-compatible default mode) and token accuracy."""
    gold, predicted = [list(s) for s in gold], [list(s) for s in predicted]
    f1 = 100 * float(entity_f1(gold, predicted))
    return {"f1": f1, "precision": 100 * float(precision_score(gold, predicted)),
            "recall": 100 * float(recall_score(gold, predicted)),
            "accuracy": 100 * float(accuracy_score(gold, predicted)), "score": f1}
