"""The fake model and schema generator in isolation: schema-valid JSON, stable outputs."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.emulator.model import FakeModel, embedding
from connector.emulator.schema_gen import SchemaGenerator

OPENAPI_TO_JSON = {
    "STRING": "string",
    "INTEGER": "integer",
    "NUMBER": "number",
    "BOOLEAN": "boolean",
    "OBJECT": "object",
    "ARRAY": "array",
}


def to_json_schema(schema: Any) -> Any:
    """Translate the OpenAPI subset (upper-case types, nullable) for jsonschema validation."""
    if not isinstance(schema, dict):
        return schema
    out = {
        k: to_json_schema(v)
        for k, v in schema.items()
        if k not in ("nullable", "propertyOrdering", "property_ordering")
    }
    if isinstance(schema.get("type"), str) and schema["type"] in OPENAPI_TO_JSON:
        out["type"] = OPENAPI_TO_JSON[schema["type"]]
    if "properties" in schema:
        out["properties"] = {k: to_json_schema(v) for k, v in schema["properties"].items()}
    for key in ("minItems", "maxItems", "minLength", "maxLength"):
        if isinstance(schema.get(key), str):
            out[key] = int(schema[key])
    return out


CASES: list[dict[str, Any]] = [
    {
        "type": "ARRAY",
        "items": {
            "type": "OBJECT",
            "properties": {
                "recipeName": {"type": "STRING", "nullable": False},
                "ingredients": {"type": "ARRAY", "items": {"type": "STRING"}},
            },
            "required": ["recipeName"],
        },
    },
    {
        "type": "OBJECT",
        "properties": {
            "a": {"type": "INTEGER", "minimum": 5, "maximum": 7},
            "b": {"type": "NUMBER", "minimum": 0.5, "maximum": 0.6},
        },
        "property_ordering": ["b", "a"],
        "required": ["a", "b"],
    },
    {
        "type": "ARRAY",
        "items": {"type": "STRING", "enum": ["x", "y"]},
        "minItems": "4",
        "maxItems": "5",
    },
    {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
            "mail": {"type": "string", "format": "email"},
        },
        "required": ["when", "id", "mail"],
        "additionalProperties": False,
    },
    {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["name", "children"],
            }
        },
        "$ref": "#/$defs/Node",
    },
    {
        "anyOf": [
            {"type": "null"},
            {"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 12},
        ]
    },
    {"type": ["string", "null"], "minLength": 30, "maxLength": 40},
    {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
            {"properties": {"b": {"const": 3}}, "required": ["b"]},
        ]
    },
    {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
    {"type": "integer", "multipleOf": 5, "minimum": 1, "maximum": 9},
    {
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": 1},
        "uniqueItems": True,
        "maxItems": 2,
    },
]


@pytest.mark.parametrize("schema", CASES)
def test_generated_values_validate(schema: dict[str, Any]) -> None:
    """Each schema dialect feature yields a value jsonschema accepts, for several seeds."""
    for seed in range(20):
        value = SchemaGenerator(seed, ["cookie", "butter"]).generate(schema)
        jsonschema.validate(value, to_json_schema(schema))


def test_property_ordering_is_respected() -> None:
    """propertyOrdering decides the key order of generated objects."""
    schema = {
        "type": "OBJECT",
        "properties": {"a": {"type": "STRING"}, "b": {"type": "STRING"}},
        "propertyOrdering": ["b", "a"],
    }
    assert list(SchemaGenerator(1).generate(schema)) == ["b", "a"]


SCALARS = st.sampled_from(
    [
        {"type": "string"},
        {"type": "integer", "minimum": -3, "maximum": 3},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"enum": ["a", "b", 1]},
        {"type": "string", "format": "date"},
    ]
)


def _compound(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    names = st.text(alphabet="abcxyz_", min_size=1, max_size=6)
    objects = st.dictionaries(names, children, max_size=4).flatmap(
        lambda props: st.builds(
            lambda req: {"type": "object", "properties": props, "required": req},
            st.lists(st.sampled_from(sorted(props)), unique=True) if props else st.just([]),
        )
    )
    arrays = st.builds(
        lambda item, lo: {"type": "array", "items": item, "minItems": lo},
        children,
        st.integers(0, 3),
    )
    unions = st.builds(lambda a: {"anyOf": [{"type": "null"}, a]}, children)
    return objects | arrays | unions


@settings(max_examples=150, deadline=None)
@given(schema=st.recursive(SCALARS, _compound, max_leaves=12), seed=st.integers(0, 2**32))
def test_random_schemas_validate(schema: dict[str, Any], seed: int) -> None:
    """Property: for random nested schemas the generated value validates."""
    jsonschema.validate(SchemaGenerator(seed).generate(schema), schema)


def test_model_counts_tokens_from_text() -> None:
    """usageMetadata follows the text: a longer prompt costs more prompt tokens."""
    model = FakeModel()
    short = model.generate({"contents": [{"parts": [{"text": "hi"}]}]}, "models/m").response
    long = model.generate({"contents": [{"parts": [{"text": "hi " * 400}]}]}, "models/m").response
    assert short is not None
    assert long is not None
    assert long["usageMetadata"]["promptTokenCount"] > short["usageMetadata"]["promptTokenCount"]
    text = short["candidates"][0]["content"]["parts"][0]["text"]
    assert short["usageMetadata"]["candidatesTokenCount"] == -(-len(text) // 4)


def test_max_output_tokens_truncates() -> None:
    """maxOutputTokens cuts the text and reports finishReason MAX_TOKENS."""
    request = {"contents": "tell me things", "generationConfig": {"maxOutputTokens": 3}}
    response = FakeModel().generate(request, "models/m").response
    assert response is not None
    candidate = response["candidates"][0]
    assert candidate["finishReason"] == "MAX_TOKENS"
    assert len(candidate["content"]["parts"][0]["text"]) <= 12


def test_missing_contents_is_a_request_error() -> None:
    """A request without contents fails alone, with a 400 and no object details."""
    outcome = FakeModel().generate({"generationConfig": {}}, "models/m")
    assert outcome.response is None
    assert outcome.error is not None
    assert outcome.error["code"] == 400
    assert set(outcome.error) == {"code", "message", "status"}


def test_embedding_is_unit_and_deterministic() -> None:
    """Same text, same vector; different text, different vector; norm 1."""
    a, b, c = embedding("x", 64), embedding("x", 64), embedding("y", 64)
    assert a == b
    assert a != c
    assert abs(sum(v * v for v in a) - 1) < 1e-3


def test_enum_mime_type() -> None:
    """text/x.enum answers one of the enum values."""
    request = {
        "contents": "pick",
        "generationConfig": {
            "responseMimeType": "text/x.enum",
            "responseSchema": {"type": "STRING", "enum": ["red", "blue"]},
        },
    }
    response = FakeModel().generate(request, "models/m").response
    assert response is not None
    assert response["candidates"][0]["content"]["parts"][0]["text"] in ("red", "blue")
