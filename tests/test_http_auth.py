"""The HTTP transport is locked (issue 17, High 2): a real server as this user, a real second local user
(uid 65534 through setpriv) that must get 401 for everything, and binds that are refused."""

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import REPO, SERVE_ARGS

NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}
LAUNCH = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "run_action", "arguments": {
    "action": "dataset_convert", "data_root": "/tmp", "backend": "docker", "env": {}}}}
LIST = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_jobs", "arguments": {}}}

# What the second user runs: plain urllib (no venv needed), every answer's status code as JSON.
PROBE = r"""
import json, sys, urllib.request, urllib.error
url, token_file, bodies = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = {}
try:
    open(token_file).read(); out["token_read"] = True
except OSError as exc:
    out["token_read"] = exc.__class__.__name__
for name, (body, auth) in bodies.items():
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if auth:
        headers["Authorization"] = auth
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            out[name] = [resp.status, resp.read(300).decode(errors="replace")]
    except urllib.error.HTTPError as exc:
        out[name] = [exc.code, exc.read(300).decode(errors="replace")]
print(json.dumps(out))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    keep = ("TAO_BEVFUSION_HOME", "TAO_BEVFUSION_ROOTS", "PATH", "HOME", "DOCKER_HOST")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return {**env, **extra}


def _serve(port: int, *args: str, env: dict[str, str] | None = None, host: str = "127.0.0.1") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *SERVE_ARGS, "--transport", "http", "--host", host, "--port",
                             str(port), *args], cwd=REPO, env=env or _env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_port(port: int, proc: subprocess.Popen, host: str = "127.0.0.1") -> None:
    for _ in range(150):
        if proc.poll() is not None:
            raise AssertionError(f"server ended: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not listen")


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=15)
    return err


@pytest.fixture
def server(workspace: Path):
    """A real HTTP server of this (root) user with a generated token."""
    port = _free_port()
    proc = _serve(port)
    _wait_port(port, proc)
    yield port, workspace / "home"
    _stop(proc)


def _listed_tools(url: str, token: str) -> list[str]:
    async def go() -> list[str]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        async with Client(streamable_http_client(url, http_client=http)) as c:
            return [t.name for t in (await c.list_tools()).tools]

    return anyio.run(go)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_another_local_user_gets_401_and_can_neither_launch_nor_read(server, workspace: Path):
    port, home = server
    token_file = home / "http.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    os.chmod(workspace.parent.parent, 0o755)  # let the second user reach the token file's folder to try it
    os.chmod(workspace.parent, 0o755)
    os.chmod(workspace, 0o755)
    url = f"http://127.0.0.1:{port}/mcp"
    bodies = {"no_token": [INIT, None], "wrong_token": [INIT, "Bearer " + "x" * 43],
              "prefix_token": [INIT, "Bearer " + token[:-1]], "basic": [INIT, "Basic " + token],
              "launch": [LAUNCH, None], "list": [LIST, "Bearer guess-guess-guess-guess"]}
    probe = subprocess.run([*NOBODY, "/usr/bin/python3", "-c", PROBE, url, str(token_file), json.dumps(bodies)],
                           capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen.pop("token_read") == "PermissionError"
    assert {name: answer[0] for name, answer in seen.items()} == dict.fromkeys(bodies, 401)
    assert all("jobs" not in answer[1] for answer in seen.values())
    assert not (home / "jobs.db").exists() or "j" not in subprocess.run(
        ["sqlite3", str(home / "jobs.db"), "SELECT id FROM jobs"], capture_output=True, text=True).stdout
    # The owner, with the token, is served (so the 401s are the lock, not a broken server).
    assert "run_action" in _listed_tools(url, token)


def test_a_wrong_host_header_is_refused_even_with_the_token(server):
    port, home = server
    token = (home / "http.token").read_text().strip()
    with httpx2.Client() as http:
        answer = http.post(f"http://127.0.0.1:{port}/mcp", json=INIT, headers={
            "Authorization": f"Bearer {token}", "Host": "evil.example:80",
            "Accept": "application/json, text/event-stream"})
        assert answer.status_code in (400, 421)
        answer = http.post(f"http://127.0.0.1:{port}/mcp", json=INIT, headers={
            "Authorization": f"Bearer {token}", "Origin": "http://evil.example",
            "Accept": "application/json, text/event-stream"})
        assert answer.status_code == 403


def test_the_generated_token_is_printed_once(workspace: Path):
    outputs = []
    for _ in range(2):
        port = _free_port()
        proc = _serve(port)
        _wait_port(port, proc)
        outputs.append(_stop(proc))
    token = (workspace / "home" / "http.token").read_text().strip()
    assert token in outputs[0] and "shown once" in outputs[0]
    assert token not in outputs[1] and "http.token" in outputs[1]


def test_token_from_the_environment_and_from_a_private_file(workspace: Path):
    chosen = "s3cret-token-of-the-operator-0123"
    port = _free_port()
    proc = _serve(port, env=_env(TAO_BEVFUSION_HTTP_TOKEN=chosen))
    try:
        _wait_port(port, proc)
        assert "run_action" in _listed_tools(f"http://127.0.0.1:{port}/mcp", chosen)
    finally:
        assert chosen not in _stop(proc)
    assert not (workspace / "home" / "http.token").exists()
    loose = workspace / "token.txt"
    loose.write_text(chosen)
    loose.chmod(0o644)
    refused = subprocess.run([sys.executable, *SERVE_ARGS, "--transport", "http", "--token-file", str(loose)],
                             cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "chmod 600" in refused.stderr and chosen not in refused.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7"])
def test_a_non_loopback_bind_is_refused_unless_allowed_with_a_chosen_token(workspace: Path, host: str):
    args = [sys.executable, *SERVE_ARGS, "--transport", "http", "--host", host, "--port", "1"]
    refused = subprocess.run(args, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr and "loopback" in refused.stderr
    generated_only = subprocess.run([*args, "--allow-remote"], cwd=REPO, env=_env(), capture_output=True,
                                    text=True, timeout=60)
    assert generated_only.returncode == 2 and "TAO_BEVFUSION_HTTP_TOKEN" in generated_only.stderr


def test_allow_remote_with_a_chosen_token_serves_behind_it(workspace: Path):
    chosen = "another-operator-token-456789abc"
    port = _free_port()
    proc = _serve(port, "--allow-remote", env=_env(TAO_BEVFUSION_HTTP_TOKEN=chosen), host="0.0.0.0")
    try:
        _wait_port(port, proc)
        with httpx2.Client() as http:
            bare = http.post(f"http://127.0.0.1:{port}/mcp", json=INIT,
                             headers={"Accept": "application/json, text/event-stream"})
        assert bare.status_code == 401 and bare.headers["www-authenticate"].startswith("Bearer")
    finally:
        _stop(proc)
