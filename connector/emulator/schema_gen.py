"""Build a JSON value that validates against a response schema.

Understands both schema dialects Gemini accepts: the OpenAPI subset of `responseSchema`
(`type: OBJECT`, `nullable`, `propertyOrdering`, int64 bounds as strings) and the JSON Schema
of `responseJsonSchema` (`$defs`/`$ref`, `anyOf`/`oneOf`/`allOf`, `const`, type lists).
Output is deterministic for a given seed, so tests can compare runs.
"""

from __future__ import annotations

import math
import random
from typing import Any

from .wire import field

_MAX_DEPTH = 8
_WORDS = (
    "amber", "basil", "cedar", "delta", "ember", "fjord", "grove", "harbor", "iris", "juniper",
    "kelp", "lumen", "maple", "nectar", "opal", "pepper", "quartz", "river", "saffron", "thyme",
)  # fmt: skip


class SchemaGenerator:
    """Generates values for one request; `words` flavour the strings with the prompt."""

    def __init__(self, seed: int, words: list[str] | None = None) -> None:
        self._rng = random.Random(seed)
        self._words = [w for w in (words or []) if w.isalnum()][:32] or list(_WORDS)

    def generate(self, schema: Any) -> Any:
        """A value valid for `schema` (a dict in either dialect)."""
        return self._value(schema, schema, 0, "value")

    # -- dispatch -------------------------------------------------------------------------

    def _value(self, schema: Any, root: Any, depth: int, name: str) -> Any:
        if not isinstance(schema, dict):
            return self._string({}, name)  # `true` / missing schema: anything goes
        schema = self._resolve(schema, root)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[self._rng.randrange(len(enum))]
        for key in ("anyOf", "oneOf"):
            options = field(schema, key)
            if isinstance(options, list) and options:
                chosen = _first_non_null(options, root, self._resolve)
                return self._value(chosen, root, depth + 1, name)
        all_of = field(schema, "allOf")
        if isinstance(all_of, list) and all_of:
            return self._value(_merge(all_of, root, self._resolve), root, depth + 1, name)
        kind = _kind(schema)
        if kind == "object":
            return self._object(schema, root, depth)
        if kind == "array":
            return self._array(schema, root, depth, name)
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "boolean":
            return self._rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema, name)

    def _resolve(self, schema: dict[str, Any], root: Any) -> dict[str, Any]:
        seen = 0
        while isinstance(schema.get("$ref"), str) and seen < 32:
            target = _pointer(root, schema["$ref"])
            if not isinstance(target, dict):
                return {}
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest}
            seen += 1
        return schema

    # -- containers -----------------------------------------------------------------------

    def _object(self, schema: dict[str, Any], root: Any, depth: int) -> dict[str, Any]:
        props = schema.get("properties")
        if not isinstance(props, dict):
            props = {}
        required = [r for r in (schema.get("required") or []) if isinstance(r, str)]
        ordering = field(schema, "propertyOrdering") or []
        names = [n for n in ordering if n in props]
        names += [n for n in props if n not in names]
        if depth >= _MAX_DEPTH:
            names = [n for n in names if n in required]
        out: dict[str, Any] = {}
        for name in names:
            out[name] = self._value(props[name], root, depth + 1, name)
        for name in required:  # required but undeclared: any value will do
            if name not in out:
                out[name] = self._string({}, name)
        return out

    def _array(self, schema: dict[str, Any], root: Any, depth: int, name: str) -> list[Any]:
        lo = _int(field(schema, "minItems"), 0)
        hi = _int(field(schema, "maxItems"), max(lo, 3))
        count = 0 if depth >= _MAX_DEPTH else min(max(lo, 2), hi)
        count = max(count, lo)
        prefix = field(schema, "prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        if prefix and depth < _MAX_DEPTH:
            count = max(lo, min(len(prefix), hi))
        items = schema.get("items")
        out: list[Any] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            if sub is False:
                break
            out.append(self._value(sub, root, depth + 1, name))
        if field(schema, "uniqueItems"):
            return _dedupe(out)
        return out

    # -- scalars --------------------------------------------------------------------------

    def _integer(self, schema: dict[str, Any]) -> int:
        lo = _num(field(schema, "minimum"))
        hi = _num(field(schema, "maximum"))
        ex_lo = field(schema, "exclusiveMinimum")
        ex_hi = field(schema, "exclusiveMaximum")
        low = math.ceil(lo) if lo is not None else 0
        if _is_number(ex_lo):
            low = max(low, math.floor(ex_lo) + 1)
        elif ex_lo is True and lo is not None and low == lo:
            low += 1
        high = math.floor(hi) if hi is not None else low + 100
        if _is_number(ex_hi):
            high = min(high, math.ceil(ex_hi) - 1)
        elif ex_hi is True and hi is not None and high == hi:
            high -= 1
        high = max(high, low)
        value = self._rng.randint(low, high)
        step = _num(field(schema, "multipleOf"))
        if step and step.is_integer() and step > 0:
            whole = int(step)
            value = -(-value // whole) * whole
            if value > high:
                value -= whole
        return value

    def _number(self, schema: dict[str, Any]) -> float:
        lo = _num(field(schema, "minimum"))
        hi = _num(field(schema, "maximum"))
        ex_lo = field(schema, "exclusiveMinimum")
        ex_hi = field(schema, "exclusiveMaximum")
        low = lo if lo is not None else 0.0
        high = hi if hi is not None else low + 100.0
        if _is_number(ex_lo):
            low = max(low, float(ex_lo))
        if _is_number(ex_hi):
            high = min(high, float(ex_hi))
        if high <= low:
            return low
        value = low + (high - low) * (0.25 + 0.5 * self._rng.random())
        rounded = round(value, 3)
        return rounded if low < rounded < high else value

    def _string(self, schema: dict[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if fmt == "date-time":
            return f"2025-0{self._rng.randint(1, 9)}-1{self._rng.randint(0, 9)}T12:00:00Z"
        if fmt == "date":
            return f"2025-0{self._rng.randint(1, 9)}-1{self._rng.randint(0, 9)}"
        if fmt == "time":
            return "12:00:00Z"
        if fmt == "email":
            return f"{self._pick()}@example.com"
        if fmt in ("uri", "url"):
            return f"https://example.com/{self._pick()}"
        if fmt == "uuid":
            return (
                f"{self._rng.getrandbits(32):08x}-0000-4000-8000-{self._rng.getrandbits(48):012x}"
            )
        label = name.replace("_", " ").strip() or "value"
        text = f"{label} {self._pick()} {self._pick()}"
        lo = _int(field(schema, "minLength"), 0)
        hi = _int(field(schema, "maxLength"), 10_000)
        while len(text) < lo:
            text += " " + self._pick()
        return text[: max(hi, 0)]

    def _pick(self) -> str:
        return self._words[self._rng.randrange(len(self._words))]


def _kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if isinstance(k, str) and k.lower() != "null"]
        kind = non_null[0] if non_null else "null"
    if isinstance(kind, str) and kind:
        return kind.lower()
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _first_non_null(options: list[Any], root: Any, resolve: Any) -> Any:
    for option in options:
        if isinstance(option, dict) and _kind(resolve(option, root)) != "null":
            return option
    return options[0]


def _merge(parts: list[Any], root: Any, resolve: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, dict):
            continue
        for key, value in resolve(part, root).items():
            if key == "properties" and isinstance(value, dict):
                merged.setdefault("properties", {}).update(value)
            elif key == "required" and isinstance(value, list):
                merged.setdefault("required", []).extend(value)
            else:
                merged[key] = value
    return merged


def _pointer(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        return None
    node = root
    for raw in ref[1:].split("/"):
        if not raw:
            continue
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit():
            node = node[int(key)] if int(key) < len(node) else None
        else:
            return None
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _int(value: Any, default: int) -> int:
    number = _num(value)
    return default if number is None else int(number)


def _dedupe(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out
