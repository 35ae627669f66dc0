"""The Batch API guide's REST samples against the emulator, without the SDK.

Two forms: the guide's curl/jq commands run by bash (when curl and jq exist), and the same
requests made with plain httpx2 so the flow is tested everywhere. The samples' quirks are kept:
single-quoted pseudo-JSON, snake_case keys, `Content-Type: application/jsonl` on the upload
start, bare request lines, `:cancel` and `:delete` sent as GET, `.done` and `.response.*`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx2
import pytest

from connector.emulator import EmulatorServer
from connector.testing import wait_until

KEY = {"x-goog-api-key": "test-key"}
BARE_LINES = (
    '{"contents": [{"parts": [{"text": "Describe the process of photosynthesis."}]}], '
    '"generationConfig": {"temperature": 0.7}}\n'
    '{"contents": [{"parts": [{"text": "What are the main ingredients in a Margherita pizza?"}]}]}'
)


def _poll(http: httpx2.Client, url: str) -> dict[str, object]:
    """GET the batch until `.done` is true (deadline 15 s)."""

    def done() -> dict[str, object] | None:
        status = http.get(url, headers={**KEY, "Content-Type": "application/json"}).json()
        assert status.get("done") in (True, False), status
        return dict(status) if status.get("done") is True else None

    status = wait_until(done, timeout=15, interval=0.02, message=f"{url} to finish")
    assert status is not None
    return status


def test_rest_flow_plain_http(emulator: EmulatorServer) -> None:
    """Inline create, resumable upload by hand, file create, poll, results, cancel, delete."""
    base = emulator.base_url
    with httpx2.Client(timeout=30) as http:
        # Inline requests, snake_case JSON body.
        inline = {
            "batch": {
                "display_name": "my-batch-requests",
                "input_config": {
                    "requests": {
                        "requests": [
                            {
                                "request": {
                                    "contents": [
                                        {
                                            "parts": [
                                                {"text": "Describe the process of photosynthesis."}
                                            ]
                                        }
                                    ]
                                },
                                "metadata": {"key": "request-1"},
                            },
                            {
                                "request": {
                                    "contents": [
                                        {
                                            "parts": [
                                                {"text": "Describe the process of photosynthesis."}
                                            ]
                                        }
                                    ]
                                },
                                "metadata": {"key": "request-2"},
                            },
                        ]
                    }
                },
            }
        }
        created = http.post(
            f"{base}/v1beta/models/gemini-2.5-flash:batchGenerateContent",
            headers={**KEY, "Content-Type": "application/json"},
            content=json.dumps(inline),
        )
        assert created.status_code == 200
        inline_name = created.json()["name"]
        status = _poll(http, f"{base}/v1beta/{inline_name}")
        assert status["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"  # type: ignore[index]
        responses = status["response"]["inlinedResponses"]  # type: ignore[index]
        assert [r["metadata"]["key"] for r in responses["inlinedResponses"]] == [
            "request-1",
            "request-2",
        ]

        # Resumable upload by hand: start with pseudo-JSON and the jsonl content type.
        data = BARE_LINES.encode() + b"\n"
        start = http.post(
            f"{base}/upload/v1beta/files",
            headers={
                **KEY,
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": str(len(data)),
                "X-Goog-Upload-Header-Content-Type": "text/plain",
                "Content-Type": "application/jsonl",
            },
            content=b"{'file': {'display_name': 'BatchInput'}}",
        )
        assert start.status_code == 200
        upload_url = start.headers["x-goog-upload-url"]
        assert start.headers["x-goog-upload-status"] == "active"
        final = http.post(
            upload_url,
            headers={"X-Goog-Upload-Offset": "0", "X-Goog-Upload-Command": "upload, finalize"},
            content=data,
        )
        assert final.status_code == 200
        assert final.headers["x-goog-upload-status"] == "final"
        file_info = final.json()
        assert file_info["file"]["uri"].startswith(base)
        assert file_info["file"]["displayName"] == "BatchInput"
        batch_input_file = file_info["file"]["name"]

        # Create from the file with the sample's single-quoted body.
        body = (
            "{'batch': {'display_name': 'my-batch-requests', "
            f"'input_config': {{'file_name': '{batch_input_file}'}}}}}}"
        )
        created = http.post(
            f"{base}/v1beta/models/gemini-2.5-flash:batchGenerateContent",
            headers={**KEY, "Content-Type": "application/json"},
            content=body,
        )
        assert created.status_code == 200, created.text
        batch_name = created.json()["name"]
        status = _poll(http, f"{base}/v1beta/{batch_name}")
        assert "inlinedResponses" not in status["response"]  # type: ignore[operator]
        responses_file_name = status["response"]["responsesFile"]  # type: ignore[index]
        result = http.get(
            f"{base}/download/v1beta/{responses_file_name}:download?alt=media", headers=KEY
        )
        assert result.status_code == 200
        lines = [json.loads(x) for x in result.text.splitlines()]
        assert [x["key"] for x in lines] == ["0", "1"]
        assert (
            "photosynthesis" in lines[0]["response"]["candidates"][0]["content"]["parts"][0]["text"]
        )

        # Cancel and delete as the samples send them: plain GET.
        emulator.update_config(queue_delay_s=100)
        pending = http.post(
            f"{base}/v1beta/models/gemini-2.5-flash:batchGenerateContent",
            headers=KEY,
            content=json.dumps(inline),
        ).json()["name"]
        assert http.get(f"{base}/v1beta/{pending}:cancel", headers=KEY).status_code == 200
        state = http.get(f"{base}/v1beta/{pending}", headers=KEY).json()["metadata"]["state"]
        assert state == "BATCH_STATE_CANCELLED"
        assert http.get(f"{base}/v1beta/{pending}:delete", headers=KEY).status_code == 200
        assert http.get(f"{base}/v1beta/{pending}", headers=KEY).status_code == 404


GUIDE_SCRIPT = r"""
set -euo pipefail
BASE="$EMULATOR_URL"
# --- inline create (guide: REST, inline requests) ---
curl -s "$BASE/v1beta/models/gemini-2.5-flash:batchGenerateContent" \
-H "x-goog-api-key: $GEMINI_API_KEY" \
-X POST \
-H "Content-Type:application/json" \
-d '{
    "batch": {
        "display_name": "my-batch-requests",
        "input_config": {
            "requests": {
                "requests": [
                    {
                        "request": {"contents": [{"parts": [{"text": "Describe the process of photosynthesis."}]}]},
                        "metadata": {
                            "key": "request-1"
                        }
                    },
                    {
                        "request": {"contents": [{"parts": [{"text": "Describe the process of photosynthesis."}]}]},
                        "metadata": {
                            "key": "request-2"
                        }
                    }
                ]
            }
        }
    }
}' > inline_create.json
# --- upload (guide: REST, input file) ---
tmp_batch_input_file=batch_input.tmp
echo -e '{"contents": [{"parts": [{"text": "Describe the process of photosynthesis."}]}], "generationConfig": {"temperature": 0.7}}\n{"contents": [{"parts": [{"text": "What are the main ingredients in a Margherita pizza?"}]}]}' > batch_input.tmp
MIME_TYPE=$(file -b --mime-type "${tmp_batch_input_file}" 2>/dev/null || echo text/plain)
NUM_BYTES=$(wc -c < "${tmp_batch_input_file}")
DISPLAY_NAME=BatchInput
tmp_header_file=upload-header.tmp
curl "$BASE/upload/v1beta/files" \
-D "${tmp_header_file}" \
-H "x-goog-api-key: $GEMINI_API_KEY" \
-H "X-Goog-Upload-Protocol: resumable" \
-H "X-Goog-Upload-Command: start" \
-H "X-Goog-Upload-Header-Content-Length: ${NUM_BYTES}" \
-H "X-Goog-Upload-Header-Content-Type: ${MIME_TYPE}" \
-H "Content-Type: application/jsonl" \
-d "{'file': {'display_name': '${DISPLAY_NAME}'}}" 2> /dev/null > /dev/null
upload_url=$(grep -i "x-goog-upload-url: " "${tmp_header_file}" | cut -d" " -f2 | tr -d "\r")
rm "${tmp_header_file}"
curl "${upload_url}" \
-H "Content-Length: ${NUM_BYTES}" \
-H "X-Goog-Upload-Offset: 0" \
-H "X-Goog-Upload-Command: upload, finalize" \
--data-binary "@${tmp_batch_input_file}" 2> /dev/null > file_info.json
file_uri=$(jq ".file.uri" file_info.json)
test -n "$file_uri" && test "$file_uri" != null
# --- create from the file (guide: single-quoted body) ---
BATCH_INPUT_FILE=$(jq -r ".file.name" file_info.json)
curl -s "$BASE/v1beta/models/gemini-2.5-flash:batchGenerateContent" \
-X POST \
-H "x-goog-api-key: $GEMINI_API_KEY" \
-H "Content-Type:application/json" \
-d "{
    'batch': {
        'display_name': 'my-batch-requests',
        'input_config': {
            'file_name': '${BATCH_INPUT_FILE}'
        }
    }
}" > file_create.json
# --- poll and fetch results (guide: retrieving results) ---
for BATCH_NAME in $(jq -r .name inline_create.json) $(jq -r .name file_create.json); do
  for i in $(seq 1 300); do
    curl -s "$BASE/v1beta/$BATCH_NAME" \
    -H "x-goog-api-key: $GEMINI_API_KEY" \
    -H "Content-Type:application/json" 2> /dev/null > batch_status.json
    if jq -r '.done' batch_status.json | grep -q "true"; then break; fi
    sleep 0.05
  done
  batch_state=$(jq -r '.metadata.state' batch_status.json)
  echo "state $batch_state"
  if [[ $(jq '.response | has("inlinedResponses")' batch_status.json) = "true" ]]; then
      jq -r '.response.inlinedResponses' batch_status.json > inline_results.json
  else
      responses_file_name=$(jq -r '.response.responsesFile' batch_status.json)
      curl -s "$BASE/download/v1beta/$responses_file_name:download?alt=media" \
      -H "x-goog-api-key: $GEMINI_API_KEY" 2> /dev/null > file_results.jsonl
  fi
done
# --- cancel and delete, sent as GET like the guide ---
curl -s "$BASE/v1beta/models/gemini-2.5-flash:batchGenerateContent" -X POST \
-H "x-goog-api-key: $GEMINI_API_KEY" -d @inline_body.json > slow.json
BATCH_NAME=$(jq -r .name slow.json)
curl -s "$BASE/v1beta/$BATCH_NAME:cancel" \
-H "x-goog-api-key: $GEMINI_API_KEY" > /dev/null
echo "cancelled $(curl -s "$BASE/v1beta/$BATCH_NAME" -H "x-goog-api-key: $GEMINI_API_KEY" -H "Content-Type:application/json" 2> /dev/null | jq -r '.metadata.state')"
curl -s "$BASE/v1beta/$BATCH_NAME:delete" \
-H "x-goog-api-key: $GEMINI_API_KEY" > /dev/null
echo "after delete $(curl -s -o /dev/null -w '%{http_code}' "$BASE/v1beta/$BATCH_NAME" -H "x-goog-api-key: $GEMINI_API_KEY")"
"""  # noqa: E501


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_guide_rest_samples_with_curl_and_jq(emulator: EmulatorServer, tmp_path: Path) -> None:
    """The guide's curl/jq commands, verbatim apart from the host, run by bash."""
    # A 1 s queue: the cancel sent right after create lands while the job is PENDING.
    emulator.update_config(queue_delay_s=1.0)
    body = {"batch": {"input_config": {"requests": {"requests": [{"request": {"contents": "x"}}]}}}}
    (tmp_path / "inline_body.json").write_text(json.dumps(body))
    env = {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "EMULATOR_URL": emulator.base_url,
        "GEMINI_API_KEY": "test-key",
    }
    done = subprocess.run(
        ["bash", "-c", GUIDE_SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[:2] == ["state BATCH_STATE_SUCCEEDED", "state BATCH_STATE_SUCCEEDED"]
    assert "cancelled BATCH_STATE_CANCELLED" in out
    assert "after delete 404" in out
    inline = json.loads((tmp_path / "inline_results.json").read_text())
    assert [r["metadata"]["key"] for r in inline["inlinedResponses"]] == ["request-1", "request-2"]
    lines = (tmp_path / "file_results.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert all("response" in json.loads(x) for x in lines)
