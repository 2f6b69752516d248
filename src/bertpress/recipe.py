"""One YAML recipe = one experiment: the validated schema, YAML in/out and ``--set`` overrides."""

from __future__ import annotations

import codecs
import copy
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bertpress.errors import BertpressError
from bertpress.init import INITIALISERS
from bertpress.models.teacher import PACKAGED_TEACHER
from bertpress.objectives import MAPPINGS, OBJECTIVES
from bertpress.search.spec import SearchSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _validate_options(registry, name: str, options: dict[str, Any], where: str) -> None:
    entry = registry.get(name)
    if entry.options is None:
        if options:
            raise ValueError(f"{registry.kind} {name!r} takes no options (got {sorted(options)}): remove {where}")
        return
    try:
        entry.options.model_validate(options)
    except ValidationError as e:
        loc, text = _merged_errors(e.errors())[0]
        raise ValueError(f"{where}.{loc}: {text}") from None


class TeacherSpec(_Strict):
    name_or_path: str = Field(PACKAGED_TEACHER, description="HF hub id, local model directory, or the packaged alias")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    mlm_head: bool | None = Field(None, description="force (true) or refuse (false) the MLM head; default: detect")


class StudentSpec(_Strict):
    num_layers: int | None = Field(None, gt=0, description="student depth (default: half the teacher's layers)")
    hidden_size: int | None = Field(None, gt=0, description="student width (default: the teacher's)")
    num_heads: int | None = Field(None, gt=0, description="attention heads (default: the teacher's head size kept)")
    intermediate_size: int | None = Field(None, gt=0, description="FFN size (default: scaled with the width)")
    init: str = Field("select", description="initialiser name: " + ", ".join(INITIALISERS.names()))
    init_args: dict[str, Any] = Field(default_factory=dict, description="options of the initialiser")
    tokenizer: str | None = Field(None, description="tokenizer for the student (must equal the teacher's vocabulary)")

    @field_validator("init")
    @classmethod
    def _known_init(cls, v: str) -> str:
        if v not in INITIALISERS:
            raise ValueError(f"unknown initialiser {v!r}: choose one of {', '.join(INITIALISERS.names())}")
        return v

    @model_validator(mode="after")
    def _init_args(self) -> StudentSpec:
        _validate_options(INITIALISERS, self.init, self.init_args, "student.init_args")
        return self

    @model_validator(mode="after")
    def _heads_divide_width(self) -> StudentSpec:
        # checkable without the teacher when the recipe gives both (else distill checks the resolved shape)
        if self.hidden_size and self.num_heads and self.hidden_size % self.num_heads:
            near = sorted(sorted((d for d in range(1, self.hidden_size + 1) if self.hidden_size % d == 0),
                                 key=lambda d: (abs(d - self.num_heads), d))[:3])
            raise ValueError(f"student.hidden_size {self.hidden_size} is not divisible by student.num_heads "
                             f"{self.num_heads}: use a head count that divides the width, e.g. "
                             f"{', '.join(map(str, near))}")
        return self


class HubDataset(_Strict):
    dataset: str = Field(description="HF datasets name (e.g. wikitext) or a local dataset directory")
    config: str | None = Field(None, description="dataset configuration (e.g. wikitext-103-raw-v1)")
    split: str = Field("train", description="split to read")
    text_field: str = Field("text", description="column holding the text")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) to pin; part of the cache key")


class DataSpec(_Strict):
    sources: list[str | HubDataset] = Field(
        min_length=1, description="text/JSONL files or globs (.gz ok), dataset directories, or hub datasets")
    text_field: str = Field("text", description="JSONL field (or saved dataset column) holding the text")
    encoding: str = Field("utf-8", description="encoding of text files (lines that do not decode are skipped)")
    block_size: int = Field(128, ge=8, le=8192, description="tokens per packed training block")
    validation_fraction: float = Field(0.01, gt=0, lt=0.5, description="share of blocks held out for validation")
    max_validation_blocks: int = Field(256, gt=0, description="cap on held-out blocks")
    max_blocks: int | None = Field(None, gt=1, description="use at most this many packed blocks (a corpus sample)")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="masking rate when an MLM loss is used")
    cache_dir: str | None = Field(None, description="tokenised-corpus cache (default $BERTPRESS_CACHE or ~/.cache)")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}: use a Python codec name such as utf-8, latin-1 or cp1252") from None
        return v


class ObjectiveSpec(BaseModel):
    """``name`` plus that objective's options, written flat: ``{name: tinybert, hidden: 1.0}``."""

    model_config = ConfigDict(extra="allow")
    name: str = Field("tinybert", description="objective name: " + ", ".join(OBJECTIVES.names()))

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in OBJECTIVES:
            raise ValueError(f"unknown objective {v!r}: choose one of {', '.join(OBJECTIVES.names())}")
        return v

    @model_validator(mode="after")
    def _options(self) -> ObjectiveSpec:
        _validate_options(OBJECTIVES, self.name, self.options, "objective")
        return self

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class MappingSpec(_Strict):
    strategy: str = Field("uniform", description="uniform, last, skip, first, or explicit")
    layers: list[int] | None = Field(None, description="explicit mapping: teacher layer (1-based) per student layer "
                                     "(repeated or decreasing layers are allowed, with a warning in the log)")

    @field_validator("strategy")
    @classmethod
    def _known(cls, v: str) -> str:
        if v != "explicit" and v not in MAPPINGS:
            raise ValueError(f"unknown mapping strategy {v!r}: choose one of {', '.join([*MAPPINGS.names(), 'explicit'])}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _layers_imply_explicit(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("layers") is not None and "strategy" not in data:
            data = {**data, "strategy": "explicit"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> MappingSpec:
        if self.layers is not None and self.strategy != "explicit":
            raise ValueError(f"mapping.layers is only read with strategy 'explicit' (got {self.strategy!r}): "
                             "drop mapping.layers or set strategy: explicit")
        if self.strategy == "explicit" and not self.layers:
            raise ValueError("mapping strategy 'explicit' needs mapping.layers: list one teacher layer per student layer")
        return self


class TrainSpec(_Strict):
    max_steps: int = Field(1000, gt=0, description="optimizer steps")
    batch_size: int = Field(32, gt=0, description="blocks per micro-batch per process")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(5e-4, gt=0, le=1, description="peak AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not on biases and LayerNorms)")
    warmup_ratio: float = Field(0.06, ge=0, le=1, description="share of steps with linear warm-up")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping norm (0: off)")
    mixed_precision: Literal["no", "fp16", "bf16"] = Field("no", description="autocast: bf16 (GPU, or a CPU with bf16 support) or fp16 (GPU)")
    eval_every: int = Field(200, ge=0, description="validation every N steps (0: only at the end)")
    eval_batches: int | None = Field(None, gt=0, description="cap on validation batches")
    save_every: int = Field(500, ge=0, description="checkpoint every N steps (0: never)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept on disk")
    log_every: int = Field(10, gt=0, description="metrics logged every N steps")
    num_workers: int = Field(1, ge=0, description="dataloader worker processes")
    freeze_embeddings: bool = Field(False, description="keep the (large) embedding matrix fixed")
    teacher_inference_mode: bool = Field(True, description="run the teacher under torch.inference_mode")
    compile: bool = Field(False, description="torch.compile the student's attention-output and FFN blocks")
    on_nonfinite: Literal["stop", "skip"] = Field("stop", description="on a NaN/Inf loss: stop, or skip the batch")


class Recipe(_Strict):
    """A whole experiment. Every field has a default but ``data.sources`` and ``output_dir``."""

    name: str = Field("bertpress", description="run name")
    seed: int = Field(42, description="seed for init, data order, masking and dropout")
    output_dir: str = Field(description="where the student, checkpoints and metrics go")
    teacher: TeacherSpec = Field(default_factory=TeacherSpec)
    student: StudentSpec = Field(default_factory=StudentSpec)
    data: DataSpec
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    mapping: MappingSpec = Field(default_factory=MappingSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    search: SearchSpec | None = Field(None, description="layer mapping search (bertpress search-mapping): see "
                                                        "docs/search.md")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_HINTS = {
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than": "use a smaller value",
    "less_than_equal": "use a smaller value",
    "missing": "add this field",
    "extra_forbidden": "remove it or fix its spelling",
    "int_parsing": "give a whole number",
    "int_type": "give a whole number",
    "int_from_float": "give a whole number",
    "float_parsing": "give a number",
    "float_type": "give a number",
    "bool_parsing": "give true or false",
    "bool_type": "give true or false",
    "string_type": "give a string",
    "list_type": "give a list",
    "dict_type": "give a mapping",
    "model_type": "give a mapping of fields",
    "too_short": "add at least one entry",
}


def _explain(err: dict[str, Any]) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error":
        return msg
    got = err.get("input")
    shown = "" if err["type"] in ("missing", "model_type") or isinstance(got, dict) else f" (got {got!r})"
    hint = _HINTS.get(err["type"])
    return f"{msg}{shown}" + (f": {hint}" if hint else "")


#: A location part naming a union member (``str``, ``list[int]``, ``literal['a']``, ``HubDataset``), not a field.
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|[A-Z]\w*|.*\[.*\].*)$")


def _merged_errors(errors: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(field path, explanation) per invalid field; the branches of a failed union become one "a, or b" line."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for err in errors:
        parts = [str(x) if str(x).isprintable() and str(x).strip() == str(x) and str(x) else repr(x)
                 for x in err["loc"]]
        if parts and _UNION_TAG.match(parts[-1]) and isinstance(err.get("input"), dict) and any(
                len(o["loc"]) > len(err["loc"]) and list(map(str, o["loc"][:len(parts) - 1])) == parts[:-1]
                for o in errors):
            continue  # a scalar branch of ``str | Model`` given a mapping: the model branch explains better
        key = ".".join(p for p in parts if not _UNION_TAG.match(p))
        groups.setdefault(key, []).append(err)
    out = []
    for loc, errs in groups.items():
        if len(errs) > 1 and all(e["type"] != "value_error" for e in errs):
            msgs = [e["msg"] for e in errs]
            text = msgs[0] + "".join(f", or {m.removeprefix('Input should be ')}" for m in msgs[1:])
            got = errs[0].get("input")
            out.append((loc, f"{text} (got {got!r})"))
        else:
            out += [(loc, _explain(e)) for e in errs]
    return out


def format_errors(e: ValidationError, source: str = "recipe", overrides: dict[str, str] | None = None) -> str:
    """One line per invalid field: ``<source>: <field.path>: <problem>: <fix>``; a field set by an override is
    blamed on it (``--set train.lr=abc: ...``), not on the recipe file."""
    lines = []
    for loc, text in _merged_errors(e.errors()):
        where = f"--set {overrides[loc]}" if overrides and loc in overrides else source
        if loc and text.startswith(f"{loc}."):
            lines.append(f"{where}: {text}")
        else:
            lines.append(f"{where}: {loc or '(top level)'}: {text}")
    return "\n".join(dict.fromkeys(lines))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=1e-4`` -> (["train", "lr"], 1e-4); the value is parsed as YAML."""
    if "=" not in text:
        raise BertpressError(f"override {text!r} is not KEY=VALUE: write e.g. --set train.max_steps=100")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value) if value.strip() else None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise BertpressError(f"override {text!r}: {part!r} is not a section: check the field path")
        node[path[-1]] = value
    return data


def recipe_from_dict(data: Any, overrides: list[str] | None = None, source: str = "recipe") -> Recipe:
    """Validate a recipe dict (after applying ``overrides``); errors become one line per field."""
    if data is None:
        raise BertpressError(f"{source}: the recipe is empty: write its sections as YAML (teacher, student, data, "
                             "objective, train; see recipes/)")
    if not isinstance(data, dict):
        raise BertpressError(f"{source}: expected a mapping of sections (teacher, student, data, ...), got "
                             f"{type(data).__name__}: write the recipe as YAML key: value pairs")
    try:
        return Recipe.model_validate(apply_overrides(data, overrides or []))
    except ValidationError as e:
        by_key = {".".join(parse_override(o)[0]): o for o in overrides or []}
        raise BertpressError(format_errors(e, source, by_key)) from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read and validate a YAML recipe file."""
    path = Path(path)
    if not path.is_file():
        raise BertpressError(f"recipe {str(path)!r} not found: give the path of a YAML recipe (see recipes/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BertpressError(f"{path}: invalid YAML{where} ({getattr(e, 'problem', e)}): fix the syntax") from None
    except UnicodeDecodeError:
        raise BertpressError(f"{path}: not UTF-8 text: save the recipe as UTF-8 YAML") from None
    return recipe_from_dict(data, overrides, source=str(path))
