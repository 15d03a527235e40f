"""genkit serve: the JSON API, the OpenAI-compatible routes (driven by the real ``openai``
client), dynamic batching that changes no sample, the token check, and bad requests that
get a 4xx JSON error while the server keeps answering."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("starlette", reason="genkit serve needs the 'serve' extra")
pytest.importorskip("uvicorn", reason="genkit serve needs the 'serve' extra")
httpx = pytest.importorskip("httpx")

from genkit_diffusion.generator import DEFAULT_SCHEDULER  # noqa: E402

import genkit  # noqa: E402
from genkit.serve.app import create_app, serve_in_thread  # noqa: E402
from genkit.serve.command import serve  # noqa: E402
from genkit.serve.models import load_models, resolve_sources  # noqa: E402
from genkit.serve.schema import Limits  # noqa: E402

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST = {"steps": 8}  # few diffusion steps: the tests check plumbing, not image quality


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """The shipped diffusion and gpt models, and a tiny class-conditional VAE made here."""
    import torch

    torch.set_num_threads(1)
    tiny = tmp_path_factory.mktemp("serve") / "tiny"
    genkit.create("vae", image_size=8, latent_dim=4, base_width=8, num_classes=3).save(tiny)
    return load_models(resolve_sources((f"tiny={tiny}",), ("diffusion", "gpt")), device="cpu")


@pytest.fixture(scope="module")
def server(table, tmp_path_factory):
    """A running server (uvicorn in a thread) with a token and small limits."""
    limits = Limits(max_n=16, max_new_tokens=64, max_steps=50, max_prompt_chars=1000,
                    max_body_bytes=4096, max_queue=64)
    out = tmp_path_factory.mktemp("served")
    app = create_app(table, limits, token=TOKEN, max_batch=16, batch_wait_ms=5, output_dir=out)
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server, headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{server}/v1", api_key=TOKEN, max_retries=0, timeout=60)


def _png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))), dtype=int)


def _close(a: np.ndarray, b: Image.Image) -> bool:
    return np.abs(a - np.asarray(b, dtype=int)).max() <= 2  # 2/255: float batch effects


# ------------------------------------------------------------------------ JSON API
def test_health_and_models_describe_what_is_served(http):
    assert http.get("/v1/health").json()["status"] == "ok"
    models = {m["name"]: m for m in http.get("/v1/models").json()["data"]}
    assert set(models) == {"diffusion", "gpt", "tiny"}
    d = models["diffusion"]
    assert (d["family"], d["modality"], d["conditions"], d["num_classes"]) == \
        ("diffusion", "image", ["label"], 10)
    options = {o["name"]: o["default"] for o in d["options"]}
    assert options["scheduler"] == DEFAULT_SCHEDULER and "steps" in options
    assert "compile" not in options
    assert models["gpt"]["modality"] == "text" and models["gpt"]["conditions"] == ["prompt"]
    assert {o["name"]: o["default"] for o in models["gpt"]["options"]}["max_new_tokens"] == 200
    assert http.get("/v1/models/tiny").json()["family"] == "vae"


def test_generate_images_equal_python_sampling(http, table):
    body = {"model": "diffusion", "n": 3, "seed": 11, "label": 4, "options": FAST}
    data = http.post("/v1/generate", json=body).json()
    assert (data["model"], data["seed"], data["n"]) == ("diffusion", 11, 3)
    assert [s["label"] for s in data["samples"]] == [4, 4, 4]
    alone = table["diffusion"].generator.sample(3, seed=11, label=4, **FAST)
    assert all(_close(_png(s["image"]), a) for s, a in zip(data["samples"], alone))
    drawn = http.post("/v1/generate", json={"model": "diffusion", "n": 4, "seed": 1,
                                            "options": FAST}).json()
    assert all(0 <= s["label"] < 10 for s in drawn["samples"])  # drawn by the model
    tiny = http.post("/v1/generate", json={"model": "tiny", "n": 2, "label": 2}).json()
    assert _png(tiny["samples"][0]["image"]).shape == (8, 8)


def test_generate_text_plain_and_streamed(http, table):
    body = {"model": "gpt", "n": 2, "seed": 5, "prompt": "The return", "options":
            {"max_new_tokens": 24}}
    texts = [s["text"] for s in http.post("/v1/generate", json=body).json()["samples"]]
    assert texts == table["gpt"].generator.sample(2, seed=5, prompt="The return",
                                                  max_new_tokens=24)
    events = []
    with http.stream("POST", "/v1/generate", json={**body, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    deltas = "".join(e["text"] for k, e in events if k == "delta")
    samples = {e["index"]: e["text"] for k, e in events if k == "sample"}
    assert deltas == texts[0] and samples == dict(enumerate(texts))
    assert events[-1][0] == "done" and sum(k == "delta" for k, _ in events) > 3


def test_generate_writes_files_like_genkit_sample(http):
    body = {"model": "diffusion", "n": 3, "seed": 2, "labels": [1, 2], "options": FAST,
            "output": "files", "out": "digits/run1"}
    data = http.post("/v1/generate", json=body).json()
    assert data["written"] == 3 and data["files"] == ["000000.png", "000001.png", "000002.png"]
    assert [r["label"] for r in data["manifest"]] == [1, 2, 1]
    out = data["out"]
    assert os.path.isfile(os.path.join(out, "manifest.jsonl")) and \
        os.path.isfile(os.path.join(out, "run.json"))
    again = http.post("/v1/generate", json=body).json()
    assert again["written"] == 0 and again["skipped"] == 3  # resumable, as genkit sample


# ------------------------------------------------------------------------ batching
def test_batched_requests_get_exactly_their_own_samples(table):
    """Requests that arrive together share one batch, and each gets what it gets alone."""
    app = create_app(table, Limits(), max_batch=16, batch_wait_ms=400)
    images = [{"seed": 1, "n": 2, "label": 3}, {"seed": 2, "n": 3}, {"seed": 3, "labels": [5]},
              {"seed": 7, "n": 2, "labels": [0, 9]}]
    texts = [{"seed": 1, "n": 2, "prompt": "The return"}, {"seed": 9, "prompt": "def f"},
             {"seed": 4, "n": 2, "prompts": ["class", "import os"]}]
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as http, \
            concurrent.futures.ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(http.post, "/v1/generate",
                            json={"model": "diffusion", "options": FAST, **b}) for b in images]
        jobs += [pool.submit(http.post, "/v1/generate",
                             json={"model": "gpt", "options": {"max_new_tokens": 20}, **b})
                 for b in texts]
        answers = [j.result().json() for j in jobs]
        stats = http.get("/v1/health").json()["models"]
    assert stats["diffusion"]["batches"] == 1 and stats["diffusion"]["largest_batch"] == 8
    assert stats["gpt"]["batches"] == 1 and stats["gpt"]["largest_batch"] == 5
    for body, answer in zip(images, answers[:4]):
        n = body.get("n", 1)
        conditions = {k: body[k] for k in ("label", "labels") if k in body}
        alone = table["diffusion"].generator.sample(n, seed=body["seed"], **conditions, **FAST)
        assert len(answer["samples"]) == n
        assert all(_close(_png(s["image"]), a) for s, a in zip(answer["samples"], alone))
    for body, answer in zip(texts, answers[4:]):
        conditions = {k: body[k] for k in ("prompt", "prompts") if k in body}
        alone = table["gpt"].generator.sample(body.get("n", 1), seed=body["seed"],
                                              max_new_tokens=20, **conditions)
        assert [s["text"] for s in answer["samples"]] == alone  # exact for text


# ------------------------------------------------------------------------ OpenAI client
def test_openai_completions_plain_and_streaming(client, table):
    g = table["gpt"].generator
    alone = g.sample(2, seed=3, prompt="The return", max_new_tokens=20, include_prompt=False)
    plain = client.completions.create(model="gpt", prompt="The return", max_tokens=20, n=2,
                                      seed=3)
    assert [c.text for c in sorted(plain.choices, key=lambda c: c.index)] == alone
    streamed: dict[int, str] = {}
    chunks = list(client.completions.create(model="gpt", prompt="The return", max_tokens=20,
                                            n=2, seed=3, stream=True))
    for chunk in chunks:
        for c in chunk.choices:
            streamed[c.index] = streamed.get(c.index, "") + c.text
    assert streamed == dict(enumerate(alone)) and len(chunks) > 4
    greedy = client.completions.create(model="gpt", prompt="def", max_tokens=8, temperature=0,
                                       seed=1, stop=["\n"])
    assert "\n" not in greedy.choices[0].text


def test_openai_chat_plain_and_streaming(client, table):
    messages = [{"role": "system", "content": "Python docs."},
                {"role": "user", "content": "The return statement"}]
    alone = table["gpt"].generator.sample(1, seed=8, prompt="Python docs.\nThe return statement",
                                          max_new_tokens=16, include_prompt=False)[0]
    plain = client.chat.completions.create(model="gpt", messages=messages, max_tokens=16, seed=8)
    assert plain.choices[0].message.role == "assistant"
    assert plain.choices[0].message.content == alone
    stream = client.chat.completions.create(model="gpt", messages=messages, max_tokens=16,
                                            seed=8, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == alone
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_images(client, table):
    result = client.images.generate(model="diffusion", prompt="7", n=2,
                                    response_format="b64_json",
                                    extra_body={"seed": 4, "options": FAST})
    alone = table["diffusion"].generator.sample(2, seed=4, label=7, **FAST)
    assert len(result.data) == 2
    assert all(_close(_png(d.b64_json), a) for d, a in zip(result.data, alone))
    labelled = client.images.generate(model="tiny", prompt="", n=1, response_format="b64_json",
                                      extra_body={"label": 2})
    assert _png(labelled.data[0].b64_json).shape == (8, 8)


def test_openai_client_sees_errors(client):
    import openai

    with pytest.raises(openai.NotFoundError, match="unknown model"):
        client.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.BadRequestError, match="makes image"):
        client.completions.create(model="diffusion", prompt="x")
    with pytest.raises(openai.BadRequestError, match="out of range"):
        client.images.generate(model="diffusion", prompt="12", response_format="b64_json")
    bad = openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert {m.id for m in client.models.list()} == {"diffusion", "gpt", "tiny"}


# ------------------------------------------------------------------------ safety
def test_token_is_checked_on_every_api_route(server):
    with httpx.Client(base_url=server, timeout=30) as anon:
        for method, path in [("GET", "/v1/health"), ("GET", "/v1/models"),
                             ("POST", "/v1/generate"), ("POST", "/v1/completions"),
                             ("POST", "/v1/chat/completions"), ("POST", "/v1/images/generations")]:
            for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
                r = anon.request(method, path, headers=headers, json={})
                assert r.status_code == 401 and "token" in r.json()["error"]["message"]
        page = anon.get("/")
        assert page.status_code == 200 and "/v1/generate" in page.text


LONG = "word " * 180  # under the character limit, over gpt's 128-token context
BAD = [
    ("/v1/generate", b"{not json", 400, "malformed JSON"),
    ("/v1/generate", b"[1, 2]", 400, "JSON object"),
    ("/v1/generate", b"{" + b'"a":' * 2000 + b"1", 413, "limit of 4096 bytes"),
    ("/v1/generate", {"model": "nope"}, 404, "unknown model 'nope'"),
    ("/v1/generate", {"n": 2}, 400, "give \"model\""),
    ("/v1/generate", {"model": "diffusion", "bogus": 1}, 400, "unknown field 'bogus'"),
    ("/v1/generate", {"model": "diffusion", "n": 17}, 400, "between 1 and 16"),
    ("/v1/generate", {"model": "diffusion", "n": "4"}, 400, "must be an integer"),
    ("/v1/generate", {"model": "diffusion", "seed": -1}, 400, "'seed' must be between"),
    ("/v1/generate", {"model": "diffusion", "label": 10}, 400, "label 10 is out of range"),
    ("/v1/generate", {"model": "diffusion", "labels": [1, "x"]}, 400, "must be integers"),
    ("/v1/generate", {"model": "diffusion", "prompt": "a cat"}, 400, "does not take a prompt"),
    ("/v1/generate", {"model": "gpt", "label": 1}, 400, "does not take a label"),
    ("/v1/generate", {"model": "diffusion", "options": {"scheduler": "zzz"}}, 400,
     "unknown scheduler 'zzz'"),
    ("/v1/generate", {"model": "diffusion", "options": {"steps": 0}}, 400, "steps must be"),
    ("/v1/generate", {"model": "diffusion", "options": {"steps": 51}}, 400, "limit of 50"),
    ("/v1/generate", {"model": "diffusion", "options": {"stepz": 5}}, 400, "unknown"),
    ("/v1/generate", {"model": "diffusion", "options": {"trajectory": "/tmp/x.gif"}}, 400,
     "set by whoever runs the server"),
    ("/v1/generate", {"model": "diffusion", "options": {"scheduler": "ddpm", "steps": 50},
                      "n": 1, "seed": 1, "label": 1, "stream": True}, 400, "streams only text"),
    ("/v1/generate", {"model": "gpt", "options": {"max_new_tokens": 65}}, 400, "limit of 64"),
    ("/v1/generate", {"model": "gpt", "options": {"temperature": -1}}, 400, "temperature"),
    ("/v1/generate", {"model": "gpt", "prompt": "x" * 1001}, 400, "limit of 1000"),
    ("/v1/generate", {"model": "gpt", "prompt": LONG, "options": {"max_new_tokens": 2}}, 400,
     "longer than the model's context"),
    ("/v1/generate", {"model": "tiny", "output": "files", "out": "../escape"}, 400,
     "relative folder"),
    ("/v1/generate", {"model": "tiny", "output": "zip"}, 400, "'output' must be"),
    ("/v1/completions", {"model": "gpt", "prompt": [1, 2, 3]}, 400, "token ids"),
    ("/v1/completions", {"model": "gpt", "prompt": "x", "temperature": 3}, 400, "temperature"),
    ("/v1/completions", {"model": "gpt", "prompt": "x", "max_tokens": 100}, 400, "between 1 and 64"),
    ("/v1/chat/completions", {"model": "gpt", "messages": []}, 400, "'messages'"),
    ("/v1/chat/completions", {"model": "gpt", "messages": [{"role": "user", "content": "x"}],
                              "tools": [{"type": "function"}]}, 400, "not supported"),
    ("/v1/images/generations", {"model": "diffusion", "prompt": "a cat"}, 400, "class label"),
    ("/v1/images/generations", {"model": "gpt", "prompt": "x"}, 400, "makes text"),
    ("/v1/images/generations", {"model": "tiny", "prompt": "", "response_format": "webp"}, 400,
     "response_format"),
]


@pytest.mark.parametrize("path, body, status, fragment", BAD,
                         ids=[f"{i}-{b[3][:20]}" for i, b in enumerate(BAD)])
def test_bad_requests_get_a_4xx_json_line_and_the_server_lives(http, path, body, status, fragment):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = http.post(path, **kwargs)
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    assert fragment in message and "\n" not in message
    assert http.get("/v1/health").status_code == 200


def test_unknown_routes_and_methods_are_json(http):
    assert http.get("/v1/nothing").json()["error"]["message"].startswith("no route")
    r = http.get("/v1/generate")
    assert r.status_code == 405 and "not allowed" in r.json()["error"]["message"]


def test_a_client_that_disconnects_mid_stream_frees_its_slot(table):
    body = {"model": "gpt", "prompt": "The", "stream": True, "seed": 1,
            "options": {"max_new_tokens": 2000, "stop_at_eos": False}}  # many seconds
    app = create_app(table, Limits(max_new_tokens=2000))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        def gpt():
            return http.get("/v1/health").json()["models"]["gpt"]

        with http.stream("POST", "/v1/generate", json=body) as response:
            lines = response.iter_lines()
            assert next(lines) == "event: delta"
            assert gpt()["queued"] == 1
        deadline = time.monotonic() + 5
        while (gpt()["queued"] or not gpt()["abandoned_batches"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gpt()["queued"] == 0 and gpt()["abandoned_batches"] == 1  # generation stopped
        r = http.post("/v1/generate", json={"model": "gpt", "prompt": "x",
                                            "options": {"max_new_tokens": 4}})
        assert r.status_code == 200


# ------------------------------------------------------------------------ command
def _one_line_error(result, fragment):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], lines


def test_command_help_has_examples():
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0 and "Example" in result.output and "--batch-wait-ms" in result.output


def test_command_refuses_other_hosts_without_a_token():
    result = CliRunner().invoke(serve, ["--host", "0.0.0.0"], env={"GENKIT_SERVE_TOKEN": None})
    _one_line_error(result, "--token")


def test_command_takes_the_token_from_the_environment():
    result = CliRunner().invoke(serve, ["--host", "0.0.0.0", "no/such/dir"],
                                env={"GENKIT_SERVE_TOKEN": "s3cret"})
    _one_line_error(result, "neither a checkpoint")  # past the token check


def test_a_full_queue_answers_429(table):
    from starlette.testclient import TestClient

    app = create_app({"tiny": table["tiny"]}, Limits(max_queue=2))
    with TestClient(app) as http:
        r = http.post("/v1/generate", json={"model": "tiny", "n": 3})
        assert r.status_code == 429 and "server busy" in r.json()["error"]["message"]
        assert http.post("/v1/generate", json={"model": "tiny", "n": 2}).status_code == 200


def test_command_one_line_errors(monkeypatch):
    _one_line_error(CliRunner().invoke(serve, ["no/such/dir"]), "neither a checkpoint")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _one_line_error(CliRunner().invoke(serve, ["--plugin", "gpt", "--port", str(port)]),
                        "cannot listen")
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # the 'serve' extra is not installed
    _one_line_error(CliRunner().invoke(serve, []), "pip install 'genkit[serve]'")


def test_command_module_is_light_and_runs_as_a_module(table):
    code = ("import sys\nfrom genkit.serve.command import serve\n"
            "assert not {'torch', 'starlette', 'uvicorn'} & set(sys.modules), 'heavy import'\n")
    light = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert light.returncode == 0, light.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "genkit.serve", table["tiny"].source,
                             "--port", "0", "--device", "cpu"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "genkit serve: http://127.0.0.1:" in line, line
        url = line.split()[2]
        health = httpx.get(url + "v1/health", timeout=30).json()
        assert list(health["models"]) == ["tiny"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
