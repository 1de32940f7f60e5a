"""Starts a real `tollgate serve` (with its in-process mock upstream) on port 0 for the
OpenAI SDK suite, and stops it afterwards; helpers to start other gateways and the mock
binary for the suites that need them."""

import contextlib
import json
import os
import pathlib
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MASTER_KEY = "tg_master_e2e_0123456789abcdef"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "e2e-admin-password-0123"

SERVER = """
server:
  proxy_listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  metrics_listen: 127.0.0.1:0
  threads: 1
  data_dir: {data_dir}
"""

CONFIG = SERVER + """providers:
  - name: mock
    kind: mock
models:
  - name: gpt-4o-mini
    aliases: [demo]
    deployments: [{{provider: mock}}]
  - name: text-embedding-3-small
    deployments: [{{provider: mock}}]
  # An upstream that throttles: its 429 (and retry-after) reaches the client unchanged, and
  # cools only this deployment down.
  - name: throttled
    deployments: [{{provider: mock, model: "gpt-4o-mini@status=429,retry_after=1"}}]
"""


@pytest.fixture(scope="session")
def gateway():
    with run_gateway(CONFIG) as addrs:
        yield addrs


ANTHROPIC_MOCK_KEY = "sk-ant-e2e-0123456789"

ANTHROPIC_CONFIG = SERVER + """providers:
  - {{name: claude, kind: anthropic, base_url: "@ANTHROPIC@", api_key: "@KEY@"}}
  - {{name: mock, kind: mock}}
models:
  - name: claude-haiku-4-5
    deployments: [{{provider: claude, model: claude-haiku-4-5-20251001}}]
  - name: claude-overloaded
    deployments: [{{provider: claude, model: "claude-haiku-4-5@status=529,retry_after=1"}}]
  - name: claude-with-fallback
    deployments: [{{provider: claude, model: "claude-haiku-4-5@status=529"}}]
    fallbacks: [gpt-4o-mini]
  - name: gpt-4o-mini
    deployments: [{{provider: mock}}]
"""



@pytest.fixture(scope="session")
def anthropic_gateway():
    """A gateway whose `claude-*` models live at Anthropic, played by the mock binary."""
    with run_mock("--api-key", ANTHROPIC_MOCK_KEY) as anthropic_url:
        config = ANTHROPIC_CONFIG.replace("@ANTHROPIC@", anthropic_url).replace(
            "@KEY@", ANTHROPIC_MOCK_KEY
        )
        with run_gateway(config) as gw:
            yield dict(gw, mock_url=anthropic_url)


@contextlib.contextmanager
def run_gateway(config_template):
    """A `tollgate serve` with `config_template` (its `{data_dir}` filled in), on port 0."""
    binary = os.environ.get("TOLLGATE_BIN", str(ROOT / "target" / "debug" / "tollgate"))
    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp) / "tollgate.yaml"
        config.write_text(config_template.format(data_dir=pathlib.Path(tmp) / "data"))
        env = dict(
            os.environ,
            TOLLGATE_MASTER_KEY=MASTER_KEY,
            TOLLGATE_ADMIN_EMAIL=ADMIN_EMAIL,
            TOLLGATE_ADMIN_PASSWORD=ADMIN_PASSWORD,
            RUST_LOG="warn",
        )
        proc = subprocess.Popen(
            [binary, "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        try:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"tollgate exited early with code {proc.wait()}")
            addrs = json.loads(line)
            _wait_ready(addrs["metrics"])
            yield {
                "base_url": f"http://{addrs['proxy']}/v1",
                "key": MASTER_KEY,
                "admin_url": f"http://{addrs['admin']}",
                "admin_email": ADMIN_EMAIL,
                "admin_password": ADMIN_PASSWORD,
            }
        finally:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def run_mock(*args):
    """The `tollgate-mock` binary on port 0; yields its base address (`http://host:port`)."""
    binary = os.environ.get(
        "TOLLGATE_MOCK_BIN", str(ROOT / "target" / "debug" / "tollgate-mock")
    )
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"tollgate-mock exited early with code {proc.wait()}")
        yield f"http://{json.loads(line)['listening']}"
    finally:
        proc.kill()
        proc.wait()


def _wait_ready(metrics_addr):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{metrics_addr}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("tollgate never became ready")
