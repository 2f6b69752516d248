"""Layer mappings: which teacher layer each student layer learns from.

A mapping is a list ``m`` of length ``L_s`` where student layer ``i`` (1-based) learns from teacher layer ``m[i-1]``
(1-based); the embedding output (layer 0) always maps to the teacher's embedding output.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

from bertpress.errors import BertpressError
from bertpress.registry import Registry

log = logging.getLogger(__name__)

MAPPINGS: Registry[Callable[[int, int], list[int]]] = Registry("mapping strategy")


@MAPPINGS.register("uniform")
def uniform(student_layers: int, teacher_layers: int) -> list[int]:
    """TinyBERT's uniform strategy ``g(i) = i · L_t / L_s`` (ends on the teacher's last layer); e.g. 6→3: 2, 4, 6."""
    return [round(i * teacher_layers / student_layers) for i in range(1, student_layers + 1)]


@MAPPINGS.register("last")
def last(student_layers: int, teacher_layers: int) -> list[int]:
    """The teacher's top ``L_s`` layers (TinyBERT's "top" strategy); e.g. 6→3: 4, 5, 6."""
    return list(range(teacher_layers - student_layers + 1, teacher_layers + 1))


@MAPPINGS.register("skip")
def skip(student_layers: int, teacher_layers: int) -> list[int]:
    """Every other teacher layer from the first (DistilBERT-style skipping); e.g. 6→3: 1, 3, 5."""
    return [round(i * teacher_layers / student_layers) + 1 for i in range(student_layers)]


@MAPPINGS.register("first")
def first(student_layers: int, teacher_layers: int) -> list[int]:
    """The teacher's bottom ``L_s`` layers (TinyBERT's "bottom" strategy); e.g. 6→3: 1, 2, 3."""
    return list(range(1, student_layers + 1))


def non_monotone_note(mapping: list[int]) -> str | None:
    """What is unusual about a mapping that is not strictly increasing (``None`` when it is)."""
    notes = []
    repeated = sorted({x for x in mapping if mapping.count(x) > 1})
    if repeated:
        notes.append(f"repeats teacher layer{'s' if len(repeated) > 1 else ''} {', '.join(map(str, repeated))}")
    if any(b < a for a, b in itertools.pairwise(mapping)):
        notes.append("goes down (a higher student layer learns a lower teacher layer)")
    return " and ".join(notes) or None


def validate_mapping(mapping: list[int], student_layers: int, teacher_layers: int) -> list[int]:
    """Check length and range; returns the mapping unchanged or raises a one-line error."""
    if len(mapping) != student_layers:
        raise BertpressError(
            f"mapping.layers has {len(mapping)} entries but the student has {student_layers} layers: "
            f"give one teacher layer per student layer"
        )
    bad = [x for x in mapping if not 1 <= x <= teacher_layers]
    if bad:
        raise BertpressError(
            f"mapping.layers {mapping} has teacher layers {bad} outside 1..{teacher_layers}: "
            f"use 1-based teacher layer numbers (the embedding output maps to itself implicitly)"
        )
    return list(mapping)


def resolve_mapping(strategy: str, student_layers: int, teacher_layers: int,
                    layers: list[int] | None = None) -> list[int]:
    """The mapping for a strategy name, or the validated explicit list (``strategy='explicit'``)."""
    if student_layers > teacher_layers and strategy != "explicit":
        raise BertpressError(
            f"student has {student_layers} layers, more than the teacher's {teacher_layers}: "
            f"use an explicit mapping or a shallower student"
        )
    if strategy == "explicit":
        if layers is None:
            raise BertpressError("mapping.strategy 'explicit' needs mapping.layers: list one teacher layer per student layer")
        mapping = validate_mapping(layers, student_layers, teacher_layers)
        note = non_monotone_note(mapping)
        if note:
            log.warning("mapping.layers %s %s: allowed (several student layers may learn one teacher layer, or in "
                        "another order), but check it is what you meant", mapping, note)
        return mapping
    return validate_mapping(MAPPINGS.get(strategy).fn(student_layers, teacher_layers), student_layers, teacher_layers)
