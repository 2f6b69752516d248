"""Student architectures as a registry: ``student.architecture`` names how the student's config is built.

An entry turns the teacher's config and the recipe's :class:`~bertpress.models.student.StudentShape` (plus its own
validated ``student.architecture_options``) into the student's config; where its parts live is the model type's
:class:`~bertpress.models.anatomy.Layout`. Every supported type has an entry that shrinks a teacher of that type;
an architecture of another type than the teacher's (MobileBERT's bottleneck students next) is a new module with its
builder and layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from transformers import PretrainedConfig

from bertpress.config import validate_options
from bertpress.errors import BertpressError
from bertpress.models.anatomy import LAYOUTS
from bertpress.models.student import StudentShape, student_config
from bertpress.registry import Registry

ArchitectureBuilder = Callable[[PretrainedConfig, StudentShape, BaseModel | None], PretrainedConfig]
ARCHITECTURES: Registry[ArchitectureBuilder] = Registry("student architecture")


def _shrunk(model_type: str) -> ArchitectureBuilder:
    def build(teacher_config: PretrainedConfig, shape: StudentShape, options: BaseModel | None) -> PretrainedConfig:
        if teacher_config.model_type != model_type:
            raise BertpressError(
                f"student.architecture {model_type!r} builds a smaller {model_type} from a {model_type} teacher, but "
                f"the teacher is {teacher_config.model_type!r}: leave student.architecture out (the teacher's type)")
        return student_config(teacher_config, shape)

    build.__doc__ = f"A smaller {model_type} with the teacher's config, vocabulary and layout (the default for a " \
                    f"{model_type} teacher)."
    return build


for _type in LAYOUTS:
    ARCHITECTURES.register(_type)(_shrunk(_type))


def architecture_config(name: str | None, teacher_config: PretrainedConfig, shape: StudentShape,
                        options: dict[str, Any] | None = None) -> PretrainedConfig:
    """The student config that architecture ``name`` (default: the teacher's type) builds for ``shape``."""
    entry = ARCHITECTURES.get(name or teacher_config.model_type)
    try:
        validate_options(entry.options, ARCHITECTURES.kind, entry.name, options or {}, "student.architecture_options")
    except ValueError as e:
        raise BertpressError(str(e)) from None
    return entry.fn(teacher_config, shape, entry.options.model_validate(options or {}) if entry.options else None)
