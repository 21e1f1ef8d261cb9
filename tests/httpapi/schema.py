"""A small JSON Schema (2020-12 subset) validator and a hypothesis strategy from a schema.

Covers what promod/http/openapi.py uses: type (one or a list), enum, const, required,
properties, additionalProperties, propertyNames, items, maxItems, minLength, maxLength,
pattern, $ref, allOf, anyOf (formats are not checked).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float | Decimal) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def errors(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$") -> list[str]:
    schema = resolve(schema, root)
    out: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[k](value) for k in kinds):
            return [f"{path}: {value!r} is not {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: {value!r} != {schema['const']!r}")
    for sub in schema.get("allOf", []):
        out += errors(value, sub, root, path)
    if "anyOf" in schema and all(errors(value, s, root, path) for s in schema["anyOf"]):
        out.append(f"{path}: matches no anyOf branch")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{path}: too short")
        if len(value) > schema.get("maxLength", 1 << 30):
            out.append(f"{path}: too long")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", 1 << 30):
            out.append(f"{path}: too many items")
        if "items" in schema:
            for i, item in enumerate(value):
                out += errors(item, schema["items"], root, f"{path}[{i}]")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}: missing {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                out += errors(item, props[key], root, f"{path}.{key}")
            elif extra is False:
                out.append(f"{path}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                out += errors(item, extra, root, f"{path}.{key}")
            if "propertyNames" in schema:
                out += errors(key, schema["propertyNames"], root, f"{path}.<{key}>")
    return out


_JSON_LEAF = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
JSON_VALUES = st.recursive(
    _JSON_LEAF,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)

_FORMATS = {
    "date-time": st.sampled_from(
        ["2026-11-20T18:03:00Z", "2026-11-20T18:03:00+01:00", "2026-11-20T18:03:00", "yesterday"]
    ),
    "email": st.sampled_from(["a@example.org", "x@y.z", "nope", ""]),
}


def from_schema(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> Any:
    """Mostly-valid instances of ``schema``, sometimes any JSON value instead."""
    schema = resolve(schema, root)
    if depth > 4:
        return JSON_VALUES
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for sub in schema["allOf"]:
            merged.update(resolve(sub, root))
        merged.update({k: v for k, v in schema.items() if k != "allOf"})
        return from_schema(merged, root, depth)
    if "const" in schema:
        return st.just(schema["const"]) | JSON_VALUES
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kinds = schema.get("type", "object" if "properties" in schema else None)
    if kinds is None:
        return JSON_VALUES
    kinds = [kinds] if isinstance(kinds, str) else kinds
    options = [_of_kind(k, schema, root, depth) for k in kinds]
    return st.one_of(*options) | JSON_VALUES if depth else st.one_of(*options)


def _of_kind(kind: str, schema: dict[str, Any], root: dict[str, Any], depth: int) -> Any:
    if kind == "string":
        if schema.get("format") in _FORMATS:
            return _FORMATS[schema["format"]] | st.text(max_size=20)
        return st.text(
            min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 24), 24)
        )
    if kind == "integer":
        return st.integers()
    if kind == "number":
        return st.integers() | st.decimals(allow_nan=False, allow_infinity=False, places=3)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = schema.get("items", {})
        return st.lists(from_schema(items, root, depth + 1), max_size=4)
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    fixed = {k: from_schema(v, root, depth + 1) for k, v in props.items() if k in required}
    optional = {k: from_schema(v, root, depth + 1) for k, v in props.items() if k not in required}
    base = st.fixed_dictionaries(fixed, optional=optional)
    extra = schema.get("additionalProperties", True)
    if isinstance(extra, dict):
        base = st.builds(
            lambda a, b: {**a, **b},
            base,
            st.dictionaries(st.text(max_size=10), from_schema(extra, root, depth + 1), max_size=3),
        )
    return base
