"""``vllm serve`` with the raw ``--hf-overrides '{"vtprune": ...}'`` form: the plugin is
found through its entry point in the server's processes, and the chat API answers as
vtprune's Hugging Face path does."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from vtprune import proving_ground as pg

from .engines import hf_answers

EXAMPLES = pg.make_split("test", 8)
STARTUP_S = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def _data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    overrides = json.dumps({"vtprune": {"method": "divprune", "keep": 64}})
    command = [
        sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", str(pg.checkpoint_path()),
        "--host", "127.0.0.1", "--port", str(port), "--hf-overrides", overrides,
        "--dtype", "float32", "--enforce-eager", "--max-model-len", "1024", "--max-num-seqs", "8",
        "--gpu-memory-utilization", "0.3", "--seed", "0", "--served-model-name", "proving-ground",
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the server's own engine process, as users run it
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"vllm serve did not start in {STARTUP_S} s:\n{log.read_text()[-3000:]}")
                time.sleep(2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def test_chat_requests_are_answered_as_the_hf_path_answers(server):
    from vtprune.eval.proving import first_word

    served = []
    for example in EXAMPLES:
        reply = _post(server + "/v1/chat/completions", {
            "model": "proving-ground",
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": _data_url(example.image)}},
                {"type": "text", "text": example.question},
            ]}],
            "temperature": 0, "max_tokens": 4,
            # the bundled model's chat template has no BOS; its prompts (pg.prompt) do
            "add_special_tokens": True,
        })
        served.append(first_word(reply["choices"][0]["message"]["content"]))
        # 64 placeholders for the image, not 576: the budget is fixed at prompt processing
        assert reply["usage"]["prompt_tokens"] < 64 + 40
    assert served == hf_answers(EXAMPLES, "divprune", keep=64)
