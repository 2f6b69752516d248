"""Student architectures as a registry: ``student.architecture`` names how the student's config is built.

An entry turns the teacher's config and the recipe's :class:`~bertpress.models.student.StudentShape` (plus its own
validated ``student.architecture_options``) into the student's config; where its parts live is the model type's
:class:`~bertpress.models.anatomy.Layout`. Every supported type has an entry that shrinks a teacher of that type;
an architecture of another type than the teacher's is a new module with its builder and layout
(``mobilebert``: bottleneck students from any teacher, :mod:`bertpress.models.mobilebert`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from transformers import PretrainedConfig

from bertpress.config import validate_options
from bertpress.errors import BertpressError
from bertpress.models.anatomy import LAYOUTS
from bertpress.models.mobilebert import MobileBertOptions, mobilebert_config
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
    if _type != "mobilebert":
        ARCHITECTURES.register(_type)(_shrunk(_type))


@ARCHITECTURES.register("mobilebert", options=MobileBertOptions)
def _mobilebert(teacher_config: PretrainedConfig, shape: StudentShape, options: BaseModel | None) -> PretrainedConfig:
    """MobileBERT bottleneck student (Sun et al., 2020) from a teacher of any supported type: deep and thin, block
    width = the teacher's, narrow intra-block attention and stacked FFNs, factorised trigram embeddings."""
    return mobilebert_config(teacher_config, shape, options)  # type: ignore[arg-type]


def architecture_config(name: str | None, teacher_config: PretrainedConfig, shape: StudentShape,
                        options: dict[str, Any] | None = None) -> PretrainedConfig:
    """The student config that architecture ``name`` (default: the teacher's type) builds for ``shape``."""
    entry = ARCHITECTURES.get(name or teacher_config.model_type)
    try:
        validate_options(entry.options, ARCHITECTURES.kind, entry.name, options or {}, "student.architecture_options")
    except ValueError as e:
        raise BertpressError(str(e)) from None
    return entry.fn(teacher_config, shape, entry.options.model_validate(options or {}) if entry.options else None)
