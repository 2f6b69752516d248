"""Entity tag schemes: IOB1 / IOB2 (CoNLL files) <-> spans <-> BIOES (what CVT trains on).

A span is ``(start, end, type)`` with ``end`` exclusive. Reading tags into spans follows conlleval: an entity starts
at ``B-`` or ``S-``, or at ``I-``/``E-`` after ``O`` or after an entity of another type; it ends before ``O``,
``B-``, ``S-`` or a type change, and after ``E-`` or ``S-``. So IOB1, IOB2 and BIOES all read correctly, and a
predicted sequence that breaks its scheme (``O I-PER E-PER``) still gives the spans a scorer would count.
"""

from __future__ import annotations

from collections.abc import Sequence

Span = tuple[int, int, str]


def spans(tags: Sequence[str]) -> list[Span]:
    """The entities of one tagged sentence."""
    out: list[Span] = []
    start, kind = None, None
    for i, tag in enumerate(tags):
        prefix, label = (tag[0], tag[2:]) if tag != "O" else ("O", None)
        begins = prefix in "BS" or (prefix in "IE" and (start is None or label != kind))
        if start is not None and (prefix == "O" or begins):
            out.append((start, i, kind))
            start, kind = None, None
        if prefix != "O" and start is None:
            start, kind = i, label
        if prefix in "ES" and start is not None:
            out.append((start, i + 1, kind))
            start, kind = None, None
    if start is not None:
        out.append((start, len(tags), kind))
    return out


def from_spans(entities: Sequence[Span], length: int, scheme: str) -> list[str]:
    """Tags of a sentence of ``length`` words with these entities, in ``scheme`` ``IOB2`` or ``BIOES``."""
    if scheme not in ("IOB2", "BIOES"):
        raise ValueError(f"unknown tag scheme {scheme!r}")
    tags = ["O"] * length
    for start, end, kind in entities:
        for i in range(start, end):
            tags[i] = f"I-{kind}"
        if scheme == "BIOES" and end - start == 1:
            tags[start] = f"S-{kind}"
            continue
        tags[start] = f"B-{kind}"
        if scheme == "BIOES":
            tags[end - 1] = f"E-{kind}"
    return tags


def to_bioes(tags: Sequence[str]) -> list[str]:
    return from_spans(spans(tags), len(tags), "BIOES")


def to_iob2(tags: Sequence[str]) -> list[str]:
    return from_spans(spans(tags), len(tags), "IOB2")
