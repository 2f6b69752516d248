"""SQuAD v1.1 / v2.0 from the official JSON files (``.json`` or ``.json.gz``).

v2.0 questions marked ``is_impossible`` have no answer; the reader keeps them with an empty answer list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertpress.data.tasks.files import read_text
from bertpress.errors import BertpressError


@dataclass(frozen=True)
class SquadExample:
    """One question on one paragraph; ``answers`` are (text, character start) pairs, empty when unanswerable."""

    id: str
    title: str
    context: str
    question: str
    answers: tuple[tuple[str, int], ...]
    is_impossible: bool = False


class _Where:
    """Names a place in the file for error messages: the line of a question id when it can be found."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def __call__(self, loc: str, needle: str | None = None) -> str:
        pos = self.text.find(json.dumps(needle)) if needle else -1
        line = f":{self.text.count(chr(10), 0, pos) + 1}" if pos >= 0 else ""
        return f"{self.path}{line} ({loc})"


def _field(obj: Any, key: str, kind: type, where: _Where, loc: str, qid: str | None = None) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        raise BertpressError(f"{where(loc, qid)}: missing or invalid {key!r}: use an official SQuAD JSON file")
    return value


def _answers(qa: dict, context: str, impossible: bool, loc: str, where: _Where) -> tuple[tuple[str, int], ...]:
    qid = qa.get("id")
    raw = _field(qa, "answers", list, where, loc, qid)
    if not raw and not impossible:
        raise BertpressError(f"{where(loc, qid)}: answerable question without answers: fix the entry "
                             "(or set is_impossible for SQuAD v2.0)")
    out = []
    for k, ans in enumerate(raw):
        text = _field(ans, "text", str, where, f"{loc}.answers[{k}]", qid)
        start = _field(ans, "answer_start", int, where, f"{loc}.answers[{k}]", qid)
        if context[start:start + len(text)] != text:
            raise BertpressError(f"{where(f'{loc}.answers[{k}]', qid)}: answer {text!r} is not at character "
                                 f"{start} of its context: fix answer_start")
        out.append((text, start))
    return tuple(out)


def read_squad(path: Path) -> list[SquadExample]:
    """Every question of a SQuAD JSON file, validated (bad entries are reported with file, line and JSON path)."""
    text = read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise BertpressError(f"{path}:{e.lineno}: invalid JSON ({e.msg}): use an official SQuAD JSON file") from None
    where = _Where(path, text)
    out = []
    for i, article in enumerate(_field(doc, "data", list, where, "top level")):
        title = article.get("title", "") if isinstance(article, dict) else ""
        for j, para in enumerate(_field(article, "paragraphs", list, where, f"data[{i}]")):
            context = _field(para, "context", str, where, f"data[{i}].paragraphs[{j}]")
            for k, qa in enumerate(_field(para, "qas", list, where, f"data[{i}].paragraphs[{j}]")):
                loc = f"data[{i}].paragraphs[{j}].qas[{k}]"
                qid = _field(qa, "id", str, where, loc)
                question = _field(qa, "question", str, where, loc, qid)
                impossible = bool(qa.get("is_impossible", False))
                out.append(SquadExample(qid, str(title), context, question,
                                        _answers(qa, context, impossible, loc, where), impossible))
    if not out:
        raise BertpressError(f"{path}: no questions: use an official SQuAD JSON file")
    seen: set[str] = set()
    for e in out:
        if e.id in seen:
            raise BertpressError(f"{where('duplicate id', e.id)}: question id {e.id!r} appears twice: make ids unique")
        seen.add(e.id)
    return out
