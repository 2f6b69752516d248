"""Build a student from a shape spec: the teacher's architecture and vocabulary, smaller."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import AutoModel, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel

from bertpress.errors import BertpressError
from bertpress.models.anatomy import anatomy, layout_of
from bertpress.models.teacher import task_model_class


@dataclass(frozen=True)
class StudentShape:
    """Student size; ``None`` means "the teacher's" (``num_layers=None`` means half the teacher's layers)."""

    num_layers: int | None = None
    hidden_size: int | None = None
    num_heads: int | None = None
    intermediate_size: int | None = None


def student_config(teacher_config: PretrainedConfig, shape: StudentShape) -> PretrainedConfig:
    """The teacher's config with the student's depth and width; validates the shape."""
    cfg = teacher_config.__class__.from_dict(teacher_config.to_dict())
    ffn_field = layout_of(teacher_config).ffn_size
    teacher_ffn = getattr(teacher_config, ffn_field)
    layers = shape.num_layers if shape.num_layers is not None else max(1, teacher_config.num_hidden_layers // 2)
    hidden = shape.hidden_size or teacher_config.hidden_size
    heads = shape.num_heads or teacher_config.num_attention_heads
    if shape.hidden_size and not shape.num_heads and hidden % heads:
        # keep the teacher's head size when only the width was given
        heads = max(1, hidden // (teacher_config.hidden_size // teacher_config.num_attention_heads))
    ffn = shape.intermediate_size or (
        teacher_ffn * hidden // teacher_config.hidden_size if shape.hidden_size else teacher_ffn)
    for name, value in (("num_layers", layers), ("hidden_size", hidden), ("num_heads", heads),
                        ("intermediate_size", ffn)):
        if value <= 0:
            raise BertpressError(f"student.{name} must be positive (got {value}): set a size >= 1")
    if hidden % heads:
        near = sorted((d for d in range(1, hidden + 1) if hidden % d == 0), key=lambda d: (abs(d - heads), d))[:3]
        raise BertpressError(
            f"student.hidden_size {hidden} is not divisible by student.num_heads {heads}: "
            f"use a head count that divides the width, e.g. {', '.join(map(str, sorted(near)))}"
        )
    cfg.num_hidden_layers = layers
    cfg.hidden_size = hidden
    cfg.num_attention_heads = heads
    setattr(cfg, ffn_field, ffn)
    if hasattr(cfg, "embedding_size"):
        # factorised embeddings (ELECTRA-small: embedding_size != hidden_size) keep the teacher's embedding size,
        # so the embeddings copy as they are and a projection lifts them to the student's width
        factorised = teacher_config.embedding_size != teacher_config.hidden_size
        cfg.embedding_size = teacher_config.embedding_size if factorised else hidden
    cfg.architectures = None
    cfg._name_or_path = ""
    return cfg


def build_student(config: PretrainedConfig, *, mlm_head: bool, task: str | None = None) -> PreTrainedModel:
    """A randomly initialised student (HF's own init); with an MLM head when the teacher has one, or with the task
    head of a fine-tuned teacher (``task``: sequence or token; labels from ``config``)."""
    cls = task_model_class(task) if task else AutoModelForMaskedLM if mlm_head else AutoModel
    try:  # fused attention where the architecture has it (MPNet and DeBERTa-v2 have only eager attention)
        model = cls.from_config(config, attn_implementation="sdpa")
    except ValueError:
        model = cls.from_config(config, attn_implementation="eager")
    anatomy(model)
    return model


def check_same_vocabulary(teacher_tokenizer, student_tokenizer) -> None:
    """Refuse a student tokenizer whose vocabulary differs from the teacher's (logits and embeddings would not align)."""
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise BertpressError(
            f"student tokenizer ({len(student_tokenizer)} tokens) does not match the teacher's "
            f"({len(teacher_tokenizer)} tokens): use the teacher's tokenizer for the student"
        )
