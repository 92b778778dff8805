"""``pinsignal proxy`` as a real process: options and environment, workers, and flat memory on big bodies."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from support import free_port, need, pinsignal_cmd, run_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "proxy-cli-secret-0123456789abcdef"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def test_bad_upstream_fails_at_start_with_one_sentence() -> None:
    result = subprocess.run(pinsignal_cmd("proxy", "--upstream", "ftp://example"), capture_output=True, text=True,
                            timeout=60, env={"PINSIGNAL_SECRET": SECRET, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "PINSIGNAL_UPSTREAM must be an http(s) URL" in result.stderr and "'ftp://example'" in result.stderr
    missing = subprocess.run(pinsignal_cmd("proxy"), capture_output=True, text=True, timeout=60,
                             env={"PINSIGNAL_SECRET": SECRET, "PATH": "/usr/bin:/bin"})
    assert missing.returncode == 2 and "PINSIGNAL_UPSTREAM is not set" in missing.stderr


def test_environment_only_two_workers_serve_the_site(upstream, redis_url, tmp_path) -> None:
    port = free_port()
    env = {"PINSIGNAL_UPSTREAM": upstream.url, "PINSIGNAL_PROXY_PORT": str(port), "PINSIGNAL_PROXY_WORKERS": "2",
           "PINSIGNAL_PROXY_INJECT": "true", "PINSIGNAL_SECRET": SECRET, "REDIS_URL": redis_url,
           "PINSIGNAL_DATA_DIR": str(tmp_path)}
    with run_process(pinsignal_cmd("proxy"), port=port, env=env, timeout=60, log=tmp_path / "proxy.log"):
        for _ in range(4):
            response = httpx.get(f"http://127.0.0.1:{port}/page", headers={"accept": "text/html"}, timeout=30)
            assert response.status_code == 200
            assert re.search(rb'<script src="/_ps/c\.js\?v=[^"]+" defer></script></HEAD>', response.content)
        assert httpx.get(f"http://127.0.0.1:{port}/_ps/c.js", timeout=30).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/page?email=jane@example.com", timeout=30).status_code == 200
    log = (tmp_path / "proxy.log").read_text()
    assert "Started parent process" in log or "Uvicorn running" in log
    assert "jane@example.com" not in log  # no per-request line from httpx with the visitor's URL


def test_hundreds_of_megabytes_stream_through_both_ways_with_flat_memory(upstream, redis_url, tmp_path) -> None:
    port = free_port()
    size = 300 * 1024 * 1024
    env = {"PINSIGNAL_SECRET": SECRET, "REDIS_URL": redis_url, "PINSIGNAL_DATA_DIR": str(tmp_path)}
    command = pinsignal_cmd("proxy", "--upstream", upstream.url, "--port", str(port))
    with run_process(command, port=port, env=env, timeout=60, log=tmp_path / "proxy.log") as process:
        assert httpx.get(f"http://127.0.0.1:{port}/page", timeout=30).status_code == 200  # warm: imports, pool
        baseline = rss_bytes(process.pid)
        peak = baseline
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_bytes(process.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        received = 0
        try:
            with httpx.stream("GET", f"http://127.0.0.1:{port}/big?size={size}&rss=1", timeout=60) as response:
                for chunk in response.iter_raw(1024 * 1024):
                    received += len(chunk)
        finally:
            stop.set()
            sampler.join()
        upload = 200 * 1024 * 1024
        piece = b"u" * (1024 * 1024)
        sampler = threading.Thread(target=sample, daemon=True)
        stop.clear()
        sampler.start()
        try:
            counted = httpx.post(f"http://127.0.0.1:{port}/sink", content=(piece for _ in range(upload // len(piece))),
                                 timeout=60)
        finally:
            stop.set()
            sampler.join()
    assert received == size
    assert counted.text == str(upload)
    growth = peak - baseline
    assert growth < 40 * 1024 * 1024, f"proxy RSS grew by {growth / 1e6:.1f} MB while streaming {size / 1e6:.0f} MB"


def test_serves_https_itself_and_cookies_get_secure(upstream, redis_url, tmp_path) -> None:
    openssl = shutil.which("openssl")
    need(openssl, "the openssl command to make a throw-away certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([str(openssl), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    port = free_port()
    env = {"PINSIGNAL_SECRET": SECRET, "REDIS_URL": redis_url, "PINSIGNAL_DATA_DIR": str(tmp_path)}
    command = pinsignal_cmd("proxy", "--upstream", upstream.url, "--port", str(port), "--ssl-certfile", str(cert),
                            "--ssl-keyfile", str(key))
    with run_process(command, port=port, env=env, timeout=60, log=tmp_path / "proxy.log"):
        response = httpx.get(f"https://127.0.0.1:{port}/inspect?epik=dj0yJnU9c2VjdXJl", verify=False, timeout=30)
    assert response.status_code == 200
    assert "dj0yJnU9c2VjdXJl" not in (tmp_path / "proxy.log").read_text()
    forwarded = dict((key, value) for key, value in response.json()["headers"] if key.startswith("x-forwarded-"))
    assert forwarded["x-forwarded-proto"] == "https"
    (epik,) = [cookie for cookie in response.headers.get_list("set-cookie") if cookie.startswith("_epik=")]
    assert "Secure" in epik
