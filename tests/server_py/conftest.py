"""Starts one `flashmoe serve` on the bundled tiny model for the whole test session.

The server listens on 127.0.0.1 on a port it picks (--port 0) and prints; it converts the model
into a temporary FLASHMOE_CACHE on first use. FLASHMOE_BINARY and FLASHMOE_SOURCE_DIR name the
binary and the repository (the ctest hook sets them; by default build/flashmoe in this checkout).
"""
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SOURCE_DIR = Path(os.environ.get("FLASHMOE_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BINARY = Path(os.environ.get("FLASHMOE_BINARY", SOURCE_DIR / "build" / "flashmoe"))
MODEL = SOURCE_DIR / "models" / "tiny-qwen35moe"
API_KEY = "test-key-123"
CONTEXT = 1024
MAX_BODY = 1 << 20

# Replies the server gives instead of sampling when the last user message contains the key: the
# tiny model never calls tools or closes a <think> block by itself.
SCRIPT = [
    {"match": "SCRIPT_TOOL", "output": "The user wants the weather.\n</think>\n\nLet me check.\n\n<tool_call>\n"
     "<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n"
     "<parameter=metric>\ntrue\n</parameter>\n</function>\n</tool_call>"},
    {"match": "SCRIPT_TWO_TOOLS", "output": "<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n"
     "</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_time>\n<parameter=zone>\nCET\n"
     "</parameter>\n</function>\n</tool_call>"},
    {"match": "SCRIPT_BROKEN_TOOL", "output": "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar"},
    {"match": "SCRIPT_REASONING", "output": "I should answer briefly.\n</think>\n\nLet there be light."},
]


class Server:
    def __init__(self, base_url, proc, log_path):
        self.base_url = base_url
        self.proc = proc
        self.log_path = log_path

    def log(self):
        return Path(self.log_path).read_text(errors="replace")


def start_server(tmp_dir, model=MODEL, extra_args=(), api_key=API_KEY, max_body=MAX_BODY):
    """Starts `flashmoe serve` on a free loopback port, its log and FLASHMOE_CACHE under tmp_dir;
    returns a Server once it listens (fails the test otherwise)."""
    tmp_dir = Path(tmp_dir)
    script = tmp_dir / "script.json"
    script.write_text(json.dumps(SCRIPT))
    log_path = tmp_dir / "server.log"
    env = dict(os.environ, FLASHMOE_CACHE=str(tmp_dir / "cache"))
    env.pop("FLASHMOE_API_KEY", None)
    args = [str(BINARY), "serve", str(model), "--host", "127.0.0.1", "--port", "0",
            "--ctx-size", str(CONTEXT), "--max-body", str(max_body), "--script-output", str(script)]
    if api_key:
        args += ["--api-key", api_key]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args + list(extra_args), stdout=log, stderr=subprocess.STDOUT, env=env)
    port = None
    deadline = time.time() + 300  # first use converts the model
    while time.time() < deadline and proc.poll() is None:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
        if m:
            port = int(m.group(1))
            break
        time.sleep(0.1)
    if port is None:
        proc.kill()
        pytest.fail("server did not start:\n" + log_path.read_text(errors="replace"))
    return Server(f"http://127.0.0.1:{port}", proc, log_path)


def stop_server(srv):
    """SIGTERM, and the server must exit 0 within 20 s."""
    srv.proc.send_signal(signal.SIGTERM)
    try:
        code = srv.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        pytest.fail("server did not stop on SIGTERM")
    assert code == 0, "server exited with %d:\n%s" % (code, srv.log()[-3000:])


@pytest.fixture(scope="session")
def server():
    assert BINARY.exists(), f"{BINARY} not built"
    tmp = tempfile.TemporaryDirectory(prefix="flashmoe_server_py_")
    srv = start_server(tmp.name, extra_args=["--parallel", "4"])
    yield srv
    stop_server(srv)
    tmp.cleanup()
