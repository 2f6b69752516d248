"""Recipe-independent configuration helpers: strict pydantic models, one-line validation errors, ``--set`` overrides.

Used by every layer that validates user settings (the recipe, the search section, fine-tuning settings), so it imports
nothing of bertpress but :mod:`bertpress.errors`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from bertpress.errors import BertpressError

#: The teacher shipped as a Python package (sentence-transformers/all-MiniLM-L6-v2), the recipe's default teacher;
#: :mod:`bertpress.models.teacher` resolves it to its directory.
PACKAGED_TEACHER = "packaged:all-MiniLM-L6-v2"


class Strict(BaseModel):
    """A settings model that refuses unknown fields and validates on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def validate_options(options_model: type[BaseModel] | None, kind: str, name: str, options: dict[str, Any],
                     where: str) -> None:
    """Validate the ``options`` of registry entry ``name`` (a ``kind``) or raise ``ValueError`` naming ``where``."""
    if options_model is None:
        if options:
            raise ValueError(f"{kind} {name!r} takes no options (got {sorted(options)}): remove {where}")
        return
    try:
        options_model.model_validate(options)
    except ValidationError as e:
        loc, text = merged_errors(e.errors())[0]
        raise ValueError(f"{where}.{loc}: {text}") from None


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


def merged_errors(errors: list[dict[str, Any]]) -> list[tuple[str, str]]:
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
    for loc, text in merged_errors(e.errors()):
        where = f"--set {overrides[loc]}" if overrides and loc in overrides else source
        if loc and text.startswith(f"{loc}."):
            lines.append(f"{where}: {text}")
        else:
            lines.append(f"{where}: {loc or '(top level)'}: {text}")
    return "\n".join(dict.fromkeys(lines))


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans: only true/false are booleans, so ``mixed_precision: no`` stays the string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def load_yaml(text: str) -> Any:
    """Parse recipe YAML (safe; ``yes``/``no``/``on``/``off`` are strings, as in YAML 1.2)."""
    return yaml.load(text, Loader=_Loader)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=1e-4`` -> (["train", "lr"], 1e-4); the value is parsed as YAML."""
    if "=" not in text:
        raise BertpressError(f"override {text!r} is not KEY=VALUE: write e.g. --set train.max_steps=100")
    key, value = text.split("=", 1)
    return key.strip().split("."), load_yaml(value) if value.strip() else None


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


