"""The Batch API guide's inline scenarios, driven through the real google-genai SDK over HTTP."""

from __future__ import annotations

import json

import jsonschema
import pytest
from emu_helpers import make_client, wait_done
from google import genai
from google.genai import types
from pydantic import BaseModel, TypeAdapter

from connector.emulator import EmulatorServer


class Recipe(BaseModel):
    """The guide's structured-output schema."""

    recipe_name: str
    ingredients: list[str]


def test_guide_inline_requests_with_keys_in_metadata(client: genai.Client) -> None:
    """Inline batch: responses come back in input order, each with its metadata echoed."""
    inline_requests = [
        {
            "contents": [{"parts": [{"text": "Tell me a one-sentence joke."}], "role": "user"}],
            "metadata": {"key": "request-1"},
        },
        {
            "contents": [{"parts": [{"text": "Why is the sky blue?"}], "role": "user"}],
            "metadata": {"key": "request-2", "kafka_offset": "42"},
        },
        types.InlinedRequest(contents="A third prompt", metadata={"key": "request-3"}),
    ]
    job = client.batches.create(
        model="models/gemini-2.5-flash",
        src=inline_requests,  # type: ignore[arg-type]
        config={"display_name": "inlined-requests-job-1"},
    )
    assert job.name is not None
    assert job.name.startswith("batches/")
    assert job.state == types.JobState.JOB_STATE_PENDING
    assert job.display_name == "inlined-requests-job-1"
    assert job.model == "models/gemini-2.5-flash"
    assert job.create_time is not None

    done = wait_done(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.end_time is not None
    assert done.create_time is not None
    assert done.end_time > done.create_time
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    responses = done.dest.inlined_responses
    assert [r.metadata for r in responses] == [
        {"key": "request-1"},
        {"key": "request-2", "kafka_offset": "42"},
        {"key": "request-3"},
    ]
    texts = [r.response.text for r in responses if r.response is not None]
    assert len(texts) == 3
    assert "one-sentence joke" in texts[0]
    assert "sky blue" in texts[1]
    first = responses[0].response
    assert first is not None
    assert first.candidates is not None
    assert first.candidates[0].finish_reason == types.FinishReason.STOP
    usage = first.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count
    assert usage.candidates_token_count
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert first.model_version == "gemini-2.5-flash"


def test_fake_model_is_deterministic(client: genai.Client) -> None:
    """The same prompt gives the same text in a later batch; another prompt differs."""
    texts = []
    for _ in range(2):
        job = client.batches.create(
            model="gemini-2.5-flash", src=[{"contents": "same prompt"}, {"contents": "other"}]
        )
        done = wait_done(client, job.name or "")
        assert done.dest is not None
        assert done.dest.inlined_responses is not None
        texts.append([r.response.text for r in done.dest.inlined_responses if r.response])
    assert texts[0] == texts[1]
    assert texts[0][0] != texts[0][1]


def test_default_api_version_v1(emulator: EmulatorServer) -> None:
    """google-genai 3.x defaults to /v1/; the emulator serves it like v1beta."""
    client = make_client(emulator, api_version=None)
    job = client.batches.create(model="gemini-2.5-flash", src=[{"contents": "hi"}])
    done = wait_done(client, job.name or "")
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert emulator.stats()["calls"]["batches.create"] == 1


def test_v1alpha_and_base_url_with_prefix(emulator: EmulatorServer) -> None:
    """A path prefix in base_url and the v1alpha version both route correctly."""
    client = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(
            base_url=emulator.base_url + "/prefix/", api_version="v1alpha"
        ),
    )
    job = client.batches.create(model="gemini-2.5-flash", src=[{"contents": "hi"}])
    assert wait_done(client, job.name or "").state == types.JobState.JOB_STATE_SUCCEEDED


def test_guide_system_instruction_and_tools_per_request(client: genai.Client) -> None:
    """Per-request config from the guide: a system instruction and the google_search tool."""
    inline_requests_list = [
        {"contents": [{"parts": [{"text": "Write a short poem about a cloud."}]}]},
        {
            "contents": [{"parts": [{"text": "Write a short poem about a cat."}]}],
            "config": {
                "system_instruction": {"parts": [{"text": "You are a cat. Your name is Neko."}]}
            },
        },
        {"contents": [{"parts": [{"text": "Who won the euro 1998?"}]}]},
        {
            "contents": [{"parts": [{"text": "Who won the euro 2025?"}]}],
            "config": {"tools": [{"google_search": {}}]},
        },
    ]
    job = client.batches.create(model="gemini-2.5-flash", src=inline_requests_list)  # type: ignore[arg-type]
    done = wait_done(client, job.name or "")
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    cloud, cat, euro98, euro25 = (
        r.response.text or "" for r in done.dest.inlined_responses if r.response
    )
    assert "Neko" in cat
    assert "Neko" not in cloud
    assert "search" in euro25
    assert "search" not in euro98


def test_function_declarations_yield_function_calls(client: genai.Client) -> None:
    """A declared function named in the prompt is called, with schema-valid arguments."""
    weather = types.FunctionDeclaration(
        name="get_weather",
        parameters=types.Schema(
            type=types.Type.OBJECT,
            properties={
                "city": types.Schema(type=types.Type.STRING),
                "days": types.Schema(type=types.Type.INTEGER),
            },
            required=["city", "days"],
        ),
    )
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[weather])])
    job = client.batches.create(
        model="gemini-2.5-flash",
        src=[types.InlinedRequest(contents="call get_weather for Paris", config=config)],
    )
    done = wait_done(client, job.name or "")
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    response = done.dest.inlined_responses[0].response
    assert response is not None
    assert response.function_calls
    call = response.function_calls[0]
    assert call.name == "get_weather"
    assert isinstance(call.args, dict)
    assert isinstance(call.args["city"], str)
    assert isinstance(call.args["days"], int)


def test_guide_structured_output_list_of_recipes(client: genai.Client) -> None:
    """`response_schema=list[Recipe]` yields JSON that parses into list[Recipe]."""
    inline_requests = [
        {
            "contents": [{"parts": [{"text": prompt}], "role": "user"}],
            "config": {"response_mime_type": "application/json", "response_schema": list[Recipe]},
        }
        for prompt in (
            "List a few popular cookie recipes, and include the amounts of ingredients.",
            "List a few popular gluten free cookie recipes, and include the amounts of ingredients.",  # noqa: E501
        )
    ]
    job = client.batches.create(
        model="models/gemini-2.5-flash",
        src=inline_requests,  # type: ignore[arg-type]
        config={"display_name": "structured-output-job-1"},
    )
    done = wait_done(client, job.name or "")
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    schema = TypeAdapter(list[Recipe]).json_schema()
    for inline_response in done.dest.inlined_responses:
        assert inline_response.response is not None
        text = inline_response.response.text or ""
        recipes = TypeAdapter(list[Recipe]).validate_json(text)
        assert recipes
        assert all(r.recipe_name for r in recipes)
        jsonschema.validate(json.loads(text), schema)


@pytest.mark.parametrize("field", ["response_schema", "response_json_schema"])
def test_structured_output_nested_schema_validates(client: genai.Client, field: str) -> None:
    """Nested pydantic models ($defs/$ref on the JSON-schema path) produce valid JSON."""

    class Step(BaseModel):
        order: int
        text: str
        optional_note: str | None = None

    class Plan(BaseModel):
        title: str
        steps: list[Step]
        done: bool
        score: float

    schema = Plan.model_json_schema() if field == "response_json_schema" else Plan
    job = client.batches.create(
        model="gemini-2.5-flash",
        src=[
            {
                "contents": "make a plan",
                "config": {"response_mime_type": "application/json", field: schema},
            }
        ],  # type: ignore[list-item]
    )
    done = wait_done(client, job.name or "")
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    response = done.dest.inlined_responses[0].response
    assert response is not None
    value = json.loads(response.text or "")
    jsonschema.validate(value, Plan.model_json_schema())
    Plan.model_validate(value)


def test_per_request_error_trigger_inline(client: genai.Client) -> None:
    """A prompt with EMULATOR_FAIL gets a per-request error; EMULATOR_FAIL_500 a 500."""
    job = client.batches.create(
        model="gemini-2.5-flash",
        src=[
            {"contents": "fine", "metadata": {"key": "a"}},
            {"contents": "please EMULATOR_FAIL", "metadata": {"key": "b"}},
            {"contents": "EMULATOR_FAIL_500 now", "metadata": {"key": "c"}},
        ],
    )
    done = wait_done(client, job.name or "")
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    ok, bad, internal = done.dest.inlined_responses
    assert ok.response is not None
    assert ok.error is None
    assert bad.response is None
    assert bad.error is not None
    assert bad.error.code == 400
    assert internal.error is not None
    assert internal.error.code == 500
    assert bad.metadata == {"key": "b"}


def test_embeddings_inline(client: genai.Client) -> None:
    """Inline embeddings honour output_dimensionality and are deterministic per text."""
    job = client.batches.create_embeddings(
        model="gemini-embedding-001",
        src={
            "inlined_requests": {
                "contents": ["alpha", "beta", "alpha"],
                "config": {"output_dimensionality": 8},
            }
        },  # type: ignore[typeddict-item]
        config={"display_name": "Inlined embeddings batch"},
    )
    done = wait_done(client, job.name or "")
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None
    assert done.dest.inlined_embed_content_responses is not None
    vectors = [
        r.response.embedding.values
        for r in done.dest.inlined_embed_content_responses
        if r.response is not None and r.response.embedding is not None
    ]
    assert len(vectors) == 3
    assert all(v is not None and len(v) == 8 for v in vectors)
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    norm = sum(x * x for x in vectors[0] or []) ** 0.5
    assert abs(norm - 1.0) < 1e-3


def test_embeddings_default_dimensionality(client: genai.Client) -> None:
    """Without output_dimensionality, gemini-embedding-001 vectors have 3072 values."""
    job = client.batches.create_embeddings(
        model="gemini-embedding-001",
        src={"inlined_requests": {"contents": ["x"]}},  # type: ignore[typeddict-item]
    )
    done = wait_done(client, job.name or "")
    assert done.dest is not None
    assert done.dest.inlined_embed_content_responses is not None
    first = done.dest.inlined_embed_content_responses[0].response
    assert first is not None
    assert first.embedding is not None
    assert len(first.embedding.values or []) == 3072
