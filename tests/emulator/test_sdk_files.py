"""File-based batches and the Files API through the real SDK: upload, create, download."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from emu_helpers import wait_done
from google import genai
from google.genai import errors, types

from connector.emulator import EmulatorServer


def _write_guide_jsonl(path: Path) -> None:
    """The guide's sample: keyed requests, one per line."""
    requests = [
        {"key": "request-1", "request": {"contents": [{"parts": [{"text": "Describe the process of photosynthesis."}]}], "generation_config": {"temperature": 0.7}}},  # noqa: E501
        {"key": "request-2", "request": {"contents": [{"parts": [{"text": "What are the main ingredients in a Margherita pizza?"}]}]}},  # noqa: E501
        {"key": "request-3", "request": {"contents": [{"parts": [{"text": "EMULATOR_FAIL this line"}]}]}},  # noqa: E501
    ]  # fmt: skip
    with path.open("w") as f:
        for req in requests:
            f.write(json.dumps(req) + "\n")


@pytest.mark.parametrize("mime_type", ["jsonl", "application/jsonl"])
def test_guide_file_batch_upload_create_download(
    client: genai.Client, tmp_path: Path, mime_type: str
) -> None:
    """Upload JSONL (also with the guide's mime_type='jsonl'), batch it, download the results."""
    path = tmp_path / "my-batch-requests.jsonl"
    _write_guide_jsonl(path)
    uploaded_file = client.files.upload(
        file=str(path),
        config=types.UploadFileConfig(display_name="my-batch-requests", mime_type=mime_type),
    )
    assert uploaded_file.name is not None
    assert uploaded_file.name.startswith("files/")
    assert uploaded_file.size_bytes == path.stat().st_size
    assert uploaded_file.state == types.FileState.ACTIVE
    assert uploaded_file.source == types.FileSource.UPLOADED
    assert uploaded_file.display_name == "my-batch-requests"
    assert uploaded_file.mime_type == mime_type
    assert uploaded_file.expiration_time is not None

    file_batch_job = client.batches.create(
        model="gemini-2.5-flash",
        src=uploaded_file.name,
        config={"display_name": "file-upload-job-1"},
    )
    batch_job = wait_done(client, file_batch_job.name or "")
    assert batch_job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert batch_job.dest is not None
    assert batch_job.dest.file_name is not None
    result_file_name = batch_job.dest.file_name
    file_content = client.files.download(file=result_file_name)
    lines = [json.loads(line) for line in file_content.decode("utf-8").splitlines()]
    assert [line["key"] for line in lines] == ["request-1", "request-2", "request-3"]
    assert "photosynthesis" in lines[0]["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert "response" in lines[1]
    assert "error" not in lines[1]
    assert lines[2]["error"]["code"] == 400
    assert "response" not in lines[2]

    result = client.files.get(name=result_file_name)
    assert result.source == types.FileSource.GENERATED
    assert result.download_uri
    assert client.files.download(file=result) == file_content
    sink = io.BytesIO()
    client.files.download(file=result_file_name, destination=sink)
    assert sink.getvalue() == file_content


def test_download_to_destination_and_download_path(
    client: genai.Client, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """`download(destination=...)` streams; `/download/v1beta/...` serves the same bytes."""
    import httpx2

    data = b'{"key": "k1", "request": {"contents": [{"parts": [{"text": "hi"}]}]}}\n'
    up = client.files.upload(file=io.BytesIO(data), config={"mime_type": "application/jsonl"})
    job = wait_done(
        client, client.batches.create(model="gemini-2.5-flash", src=up.name or "").name or ""
    )
    assert job.dest is not None
    assert job.dest.file_name
    target = tmp_path / "out.jsonl"
    client.files.download(file=job.dest.file_name, destination=str(target))
    body = client.files.download(file=job.dest.file_name)
    assert target.read_bytes() == body
    file_id = job.dest.file_name.removeprefix("files/")
    alt = httpx2.get(
        f"{emulator.base_url}/download/v1beta/files/{file_id}:download?alt=media",
        headers={"x-goog-api-key": "k"},
    )
    assert alt.status_code == 200
    assert alt.content == body


def test_uploaded_files_cannot_be_downloaded(client: genai.Client) -> None:
    """Only generated files download, as on the real Files API."""
    up = client.files.upload(file=io.BytesIO(b"{}\n"), config={"mime_type": "application/jsonl"})
    with pytest.raises(errors.ClientError) as info:
        client.files.download(file=up.name or "")
    assert info.value.code == 400


def test_bare_request_lines_get_index_keys(client: genai.Client) -> None:
    """Lines without the key/request wrapper are requests themselves; the key is the index."""
    data = (
        b'{"contents": [{"parts": [{"text": "Describe the process of photosynthesis."}]}], "generationConfig": {"temperature": 0.7}}\n'  # noqa: E501
        b'{"contents": [{"parts": [{"text": "What are the main ingredients in a Margherita pizza?"}]}]}\n'  # noqa: E501
        b"not json at all\n"
    )
    up = client.files.upload(file=io.BytesIO(data), config={"mime_type": "text/plain"})
    job = wait_done(
        client, client.batches.create(model="gemini-2.5-flash", src=up.name or "").name or ""
    )
    assert job.dest is not None
    assert job.dest.file_name
    lines = [json.loads(x) for x in client.files.download(file=job.dest.file_name).splitlines()]
    assert [x["key"] for x in lines] == ["0", "1", "2"]
    assert "response" in lines[0]
    assert "response" in lines[1]
    assert lines[2]["error"]["code"] == 400


def test_large_upload_in_two_chunks(client: genai.Client, emulator: EmulatorServer) -> None:
    """A file over 8 MiB goes up in two chunks and arrives intact."""
    line = (
        b'{"key": "k", "request": {"contents": [{"parts": [{"text": "' + b"x" * 1000 + b'"}]}]}}\n'
    )
    data = line * (8 * 1024 * 1024 // len(line) + 10)
    up = client.files.upload(
        file=io.BytesIO(data), config={"mime_type": "application/jsonl", "name": "bigfile-1"}
    )
    assert up.name == "files/bigfile-1"
    assert up.size_bytes == len(data)
    assert emulator.stats()["files"]["bytes"] == len(data)


def test_files_get_list_paging_delete(client: genai.Client) -> None:
    """files.list pages with page_size; files.delete removes; a deleted file answers 403."""
    names = {
        client.files.upload(
            file=io.BytesIO(b"{}\n"),
            config={"mime_type": "application/jsonl", "display_name": f"f{i}"},
        ).name
        for i in range(5)
    }
    pager = client.files.list(config={"page_size": 2})
    assert len(pager.page) == 2
    assert {f.name for f in pager} == names
    victim = sorted(n for n in names if n)[0]
    assert client.files.get(name=victim).name == victim
    client.files.delete(name=victim)
    with pytest.raises(errors.ClientError) as info:
        client.files.get(name=victim)
    assert info.value.code == 403
    assert {f.name for f in client.files.list()} == names - {victim}


def test_embeddings_from_file(client: genai.Client) -> None:
    """The guide's create_embeddings with src={'file_name': ...}; output lines carry vectors."""
    lines = [
        {
            "key": "e1",
            "request": {"content": {"parts": [{"text": "alpha"}]}, "output_dimensionality": 16},
        },
        {
            "key": "e2",
            "request": {"content": {"parts": [{"text": "beta"}]}, "outputDimensionality": 16},
        },
        {"key": "e3", "request": {"content": {"parts": [{"text": "EMULATOR_FAIL"}]}}},
    ]
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    uploaded_batch_requests = client.files.upload(
        file=io.BytesIO(data), config={"mime_type": "jsonl"}
    )
    file_job = client.batches.create_embeddings(
        model="gemini-embedding-001",
        src={"file_name": uploaded_batch_requests.name},  # type: ignore[typeddict-item]
        config={"display_name": "Input embeddings batch"},
    )
    done = wait_done(client, file_job.name or "")
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None
    assert done.dest.file_name
    out = [json.loads(x) for x in client.files.download(file=done.dest.file_name).splitlines()]
    assert [x["key"] for x in out] == ["e1", "e2", "e3"]
    assert len(out[0]["response"]["embedding"]["values"]) == 16
    assert out[2]["error"]["code"] == 400
    assert out[2]["error"]["status"] == "INVALID_ARGUMENT"


def test_create_from_missing_file_is_rejected(client: genai.Client) -> None:
    """A batch naming a file that does not exist is refused at create."""
    with pytest.raises(errors.ClientError) as info:
        client.batches.create(model="gemini-2.5-flash", src="files/doesnotexist")
    assert info.value.code == 400


def test_files_paging_survives_deletes(client: genai.Client, emulator: EmulatorServer) -> None:
    """Deleting a file already listed does not make the next page skip or repeat files."""
    import httpx2

    for i in range(5):
        client.files.upload(
            file=io.BytesIO(b"{}\n"), config={"mime_type": "jsonl", "display_name": f"p{i}"}
        )
    headers = {"x-goog-api-key": "k"}
    with httpx2.Client(base_url=emulator.base_url, headers=headers) as http:
        first = http.get("/v1beta/files", params={"pageSize": 2}).json()
        http.delete(f"/v1beta/{first['files'][0]['name']}")
        seen = [f["name"] for f in first["files"]]
        token = first.get("nextPageToken")
        while token:
            page = http.get("/v1beta/files", params={"pageSize": 2, "pageToken": token}).json()
            assert page["files"]
            seen += [f["name"] for f in page["files"]]
            token = page.get("nextPageToken")
    assert len(seen) == 5
    assert len(set(seen)) == 5
