"""Faults: an expert file truncated under a running server. The server runs from a packed copy of
the bundled model with an expert cache that holds one expert (so every token reads from disk) and
one slot (so a failed request's half-built state is what the next request would reuse). A request
that needs the truncated file must fail with a 500 in OpenAI's shape naming the file (an error
event then [DONE] when streaming), other routes keep answering, and once the file is restored in
place the same greedy requests give exactly the replies they gave before the fault."""
import http.client
import json
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import API_KEY, BINARY, MODEL, start_server, stop_server

EXPERT_BYTES = 28672  # one expert of the bundled model, 4-bit packed: the smallest useful --cache
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def packed():
    assert BINARY.exists(), f"{BINARY} not built"
    tmp = tempfile.TemporaryDirectory(prefix="flashmoe_faults_")
    model = Path(tmp.name) / "model"
    subprocess.run([str(BINARY), "convert", str(MODEL), "-o", str(model)], check=True, timeout=120,
                   env={"FLASHMOE_CACHE": str(Path(tmp.name) / "cache"), "PATH": "/usr/bin:/bin"},
                   stdout=subprocess.DEVNULL)
    srv = start_server(tmp.name, model=model,
                       extra_args=["--parallel", "1", "--cache", str(EXPERT_BYTES), "--io", "page-cache"])
    yield srv, model
    stop_server(srv)
    tmp.cleanup()


def post(srv, path, body):
    url = urlparse(srv.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("POST", path, body=json.dumps(body), headers=HEADERS)
    resp = conn.getresponse()
    status, raw = resp.status, resp.read()
    conn.close()
    return status, raw


def chat(text, **kw):
    return dict({"messages": [{"role": "user", "content": text}], "max_tokens": 6, "temperature": 0,
                 "chat_template_kwargs": {"enable_thinking": False}}, **kw)


def content(srv, text):
    status, raw = post(srv, "/v1/chat/completions", chat(text))
    assert status == 200, raw
    return json.loads(raw)["choices"][0]["message"]["content"]


def assert_names_file(err, path):
    assert err["type"] == "server_error", err
    assert str(path.name) in err["message"] and "experts" in err["message"], err


def test_truncated_expert_file_fails_the_request_and_the_server_recovers(packed):
    srv, model = packed
    expert_file = model / "experts" / "layer_000.bin"
    q, p = "Tell of the light upon the waters", "And David said"
    ref_q, ref_p = content(srv, q), content(srv, p)  # the slot now holds p

    original = expert_file.read_bytes()
    try:
        # Truncated in place: the server's open descriptor sees the short file.
        with open(expert_file, "r+b") as f:
            f.truncate(1000)
        status, raw = post(srv, "/v1/chat/completions", chat(q))
        assert status == 500, raw
        assert_names_file(json.loads(raw)["error"], expert_file)

        status, raw = post(srv, "/v1/completions", {"prompt": "In the beginning", "max_tokens": 4, "stream": True})
        assert status == 200, raw  # the status line leaves before the first token
        events = [l[len("data: "):] for l in raw.decode().split("\n") if l.startswith("data: ")]
        assert events[-1] == "[DONE]", raw
        errors = [json.loads(e)["error"] for e in events[:-1] if "error" in json.loads(e)]
        assert len(errors) == 1, raw
        assert_names_file(errors[0], expert_file)

        # Routes that need no experts still answer.
        url = urlparse(srv.base_url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.request("GET", "/health")
        health = json.loads(conn.getresponse().read())
        conn.close()
        assert health["requests_failed"] == 2 and health["slots_busy"] == 0, health
    finally:
        with open(expert_file, "r+b") as f:  # restored in place, same inode
            f.write(original)
    assert srv.proc.poll() is None, srv.log()[-3000:]
    # The failed prompt's partial state must not be reused: the same greedy replies as before.
    assert content(srv, q) == ref_q
    assert content(srv, p) == ref_p
    assert content(srv, q) == ref_q
