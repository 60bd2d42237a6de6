"""The HTTP server, in process: every endpoint, bad input, unknown tasks, concurrent requests (micro-batched)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from polytask.inference import Pipeline
from polytask.serve.app import create_app
from polytask.serve.batcher import MicroBatcher, Unavailable


@pytest.fixture(scope="module")
def pipe(trained) -> Pipeline:
    return Pipeline.from_pretrained(trained[1].best_dir)


@pytest.fixture()
def client(pipe: Pipeline):
    with TestClient(create_app(pipe, max_batch=4, max_chars=50, wait_ms=50)) as c:
        yield c


def test_health_and_tasks(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    tasks = client.get("/tasks").json()
    assert tasks["slots"]["type"] == "token_classification" and "B-city" in tasks["slots"]["labels"]
    assert tasks["similarity"]["input"] == "pair"
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_predict_equals_pipeline(client: TestClient, pipe: Pipeline) -> None:
    texts = ["what is the weather in paris today", "play music by adele queen now"]
    r = client.post("/predict", json={"texts": texts})
    assert r.status_code == 200
    assert r.json()["predictions"] == pipe(texts)
    r = client.post("/predict", json={"texts": [["weather in rome", "weather in oslo"]], "tasks": ["similarity"]})
    assert r.status_code == 200 and "value" in r.json()["predictions"][0]["similarity"]


@pytest.mark.parametrize("body, status, text", [
    ({"texts": []}, 422, "texts"),
    ({"texts": ["a"] * 5}, 422, "at most 4"),
    ({"texts": ["x" * 51]}, 422, "the limit is 50"),
    ({"texts": ["ok", ["a", "b"]]}, 422, "mix of single texts and pairs"),
    ({"texts": ["   "]}, 422, "empty"),
    ({"texts": ["hi"], "tasks": ["nope"]}, 404, "available: intent, slots"),
    ({"texts": ["hi"], "tasks": ["similarity"]}, 422, "read (text, text_pair) pairs"),
    ({"texts": ["hi"], "extra": 1}, 422, "extra"),
])
def test_bad_requests(client: TestClient, body: dict, status: int, text: str) -> None:
    r = client.post("/predict", json=body)
    assert r.status_code == status, r.text
    assert text in r.text


def test_bad_json_and_server_survives(client: TestClient) -> None:
    r = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/predict", content=b'{"texts": ["\xff\xfe"]}', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]  # not UTF-8: unreadable, not a crash
    assert client.post("/predict", json={"texts": ["still alive"]}).status_code == 200


def test_concurrent_requests_are_batched(pipe: Pipeline) -> None:
    app = create_app(pipe, max_batch=64, wait_ms=100)

    async def run() -> tuple[list[httpx.Response], int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                texts = [f"play music by {a} now" for a in ["adele", "queen", "prince", "drake", "sting", "bjork"]]
                responses = await asyncio.gather(*(c.post("/predict", json={"texts": [t]}) for t in texts))
            return list(responses), app.state.batcher.batches_run

    responses, calls = asyncio.run(run())
    assert all(r.status_code == 200 for r in responses)
    assert calls < len(responses), "concurrent requests should share model calls"
    singles = pipe([f"play music by {a} now" for a in ["adele", "queen", "prince", "drake", "sting", "bjork"]])
    # labels, not scores: a different batch composition changes padding and so the last float digits
    assert [r.json()["predictions"][0]["intent"]["label"] for r in responses] == [s["intent"]["label"] for s in singles]


# ----------------------------------------------------------------------------------------------------------------------
# one bad request never hurts another; limits; timeouts; shutdown

GOOD = [f"play music by {a} now" for a in ["adele", "queen", "prince", "drake", "sting", "bjork"]]


class Wrapped:
    """The real pipeline behind a fault or a gate, for the batcher's failure paths.

    ``poison``: a call that holds an input containing this word raises RuntimeError (as a tokenizer might on an input
    no validation foresaw). ``gated``: a call blocks until the test opens ``gate`` (``entered`` tells it started)."""

    def __init__(self, pipe: Pipeline, poison: str | None = None, gated: bool = False) -> None:
        self.pipe, self.poison, self.gated = pipe, poison, gated
        self.entered, self.gate = threading.Event(), threading.Event()
        self.calls: list[int] = []  # size of every call

    def __getattr__(self, name: str):
        return getattr(self.pipe, name)

    def __call__(self, inputs, tasks=None):
        self.calls.append(len(inputs))
        self.entered.set()
        if self.gated:
            assert self.gate.wait(60), "the test never opened the gate"
        if self.poison and any(self.poison in str(x) for x in inputs):
            raise RuntimeError(f"cannot encode {self.poison!r}")
        return self.pipe(inputs, tasks)


def _same(a: object, b: object) -> bool:
    """Equal predictions, floats up to 1e-4 (a different batch changes padding and so the last digits)."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-4
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


async def _concurrently(app, bodies: list[object]) -> list[httpx.Response]:
    """POST every body to /predict at once, in process, with the app's lifespan (batcher) running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            send = [c.post("/predict", content=b, headers={"content-type": "application/json"}) if isinstance(b, bytes)
                    else c.post("/predict", json=b) for b in bodies]
            return list(await asyncio.gather(*send))


def test_lone_surrogate_fails_alone_in_a_micro_batch(pipe: Pipeline) -> None:
    """A lone surrogate (valid JSON, not text) used to fail inside the tokenizer, and with it every request of its
    micro-batch. Now it gets a 422 naming the input; the requests sent with it get what they get alone."""
    app = create_app(pipe, max_batch=64, wait_ms=200)
    bad = b'{"texts": ["play music by \\ud800 now"]}'
    bodies: list[object] = [{"texts": [t]} for t in GOOD[:3]] + [bad] + [{"texts": [t]} for t in GOOD[3:]]
    responses = asyncio.run(_concurrently(app, bodies))
    assert responses[3].status_code == 422, responses[3].text
    assert "texts[0] holds a lone surrogate U+D800 at character 14" in responses[3].text
    good = responses[:3] + responses[4:]
    assert [r.status_code for r in good] == [200] * 6, [r.text for r in good]
    assert app.state.batcher.batches_run < 6, "the good requests should have shared model calls"
    for r, text in zip(good, GOOD):
        assert _same(r.json()["predictions"], pipe([text])), text


def test_failed_merged_call_is_retried_per_request(pipe: Pipeline) -> None:
    """An input that passes validation but fails in the model call fails alone: its merged call runs again one
    request at a time; the others get exactly their single-request answer."""
    wrapped = Wrapped(pipe, poison="poison")
    app = create_app(wrapped, max_batch=64, wait_ms=200)  # type: ignore[arg-type]
    bodies: list[object] = [{"texts": [t]} for t in GOOD]
    bodies.insert(2, {"texts": ["play poison now"]})
    responses = asyncio.run(_concurrently(app, bodies))
    assert responses[2].status_code == 500 and "cannot encode 'poison'" in responses[2].json()["error"]
    good = responses[:2] + responses[3:]
    assert [r.status_code for r in good] == [200] * 6
    stats = app.state.batcher.stats
    assert stats.split_calls >= 1 and stats.failed_requests == 1 and stats.requests == 6
    assert max(wrapped.calls) > 1, "the poisoned request must have shared a call"
    for r, text in zip(good, GOOD):
        assert r.json()["predictions"] == pipe([text]), text  # run alone after the split: the very same numbers


@pytest.mark.parametrize("item, where", [
    (["weather in rome", "weather in \ud801"], "texts[0][1] holds a lone surrogate U+D801 at character 11"),
    ({"text": "\udfff", "e1": [0, 1], "e2": [1, 2]}, "texts[0].text holds a lone surrogate U+DFFF"),
    ("\x00\x01\x02 \x7f", "texts[0] is empty (only white space or control characters)"),
])
def test_invalid_text_is_named(client: TestClient, item: object, where: str) -> None:
    body = json.dumps({"texts": [item]})  # ensure_ascii escapes the surrogates as JSON allows
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert where in r.text


def test_control_characters_read_as_spaces(client: TestClient, pipe: Pipeline) -> None:
    r = client.post("/predict", json={"texts": ["play music by\x00adele\x1bnow"]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == pipe(["play music by adele now"])


def _call_asgi(app, headers: list[tuple[bytes, bytes]], receive) -> list[dict]:
    """One POST /predict straight through the ASGI interface; -> the messages the app sent."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"test"), (b"content-type", b"application/json"), *headers],
             "client": ("test", 1), "server": ("test", 80)}
    asyncio.run(app(scope, receive, send))
    return sent


def test_body_over_the_limit_refused_before_it_is_read(pipe: Pipeline) -> None:
    """413 from Content-Length alone: the app never asks for a byte of the body."""
    async def receive() -> dict:
        raise AssertionError("the body must not be read")

    sent = _call_asgi(create_app(pipe, max_body_bytes=1000), [(b"content-length", b"100000000")], receive)
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {
        "error": "request body of 100000000 bytes; the limit is 1000 bytes (--max-body-bytes)"}


def test_chunked_body_capped_while_streaming(pipe: Pipeline) -> None:
    """Without Content-Length (chunked), reading stops as soon as the bytes read pass the limit."""
    reads = 0

    async def endless() -> dict:  # a client that would send 100-byte chunks for ever
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b" " * 100, "more_body": True}

    sent = _call_asgi(create_app(pipe, max_body_bytes=1000), [(b"transfer-encoding", b"chunked")], endless)
    assert sent[0]["status"] == 413 and "over 1000 bytes (chunked)" in json.loads(sent[1]["body"])["error"]
    assert reads == 11, "the 11th chunk passes the limit; no more is read"

    def small():  # a generator body goes out chunked, without Content-Length
        yield b'{"texts": ['
        yield b'"play music by adele now"]}'

    with TestClient(create_app(pipe, max_body_bytes=1000)) as c:
        r = c.post("/predict", content=small(), headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["predictions"] == pipe(["play music by adele now"])


def test_request_timeout_is_504_and_the_server_goes_on(pipe: Pipeline) -> None:
    wrapped = Wrapped(pipe, gated=True)
    app = create_app(wrapped, timeout_s=0.2, wait_ms=1)  # type: ignore[arg-type]

    async def run() -> tuple[httpx.Response, httpx.Response]:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
                slow = await c.post("/predict", json={"texts": ["play music by adele now"]})  # the gate is shut
                wrapped.gate.set()
                return slow, await c.post("/predict", json={"texts": ["play music by queen now"]})

    slow, after = asyncio.run(run())
    assert slow.status_code == 504 and "request timeout of 0.2 s (--timeout-s)" in slow.json()["error"]
    assert after.status_code == 200 and after.json()["predictions"] == pipe(["play music by queen now"])


def test_full_queue_is_503(pipe: Pipeline) -> None:
    wrapped = Wrapped(pipe, gated=True)
    app = create_app(wrapped, max_queue=1, wait_ms=1)  # type: ignore[arg-type]

    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
                def post(text: str):
                    return asyncio.create_task(c.post("/predict", json={"texts": [text]}))

                first = post("play music by adele now")
                while not wrapped.entered.is_set():  # the first request is in the model (blocked at the gate)
                    await asyncio.sleep(0.01)
                second = post("play music by queen now")
                while app.state.batcher.queued < 1:  # the second one waits in the queue
                    await asyncio.sleep(0.01)
                third = await c.post("/predict", json={"texts": ["play music by drake now"]})
                wrapped.gate.set()
                return [await first, await second, third]

    first, second, third = asyncio.run(run())
    assert (first.status_code, second.status_code) == (200, 200)
    assert third.status_code == 503 and "the limit is 1" in third.json()["error"]


def test_batcher_stop_answers_every_queued_request(pipe: Pipeline) -> None:
    wrapped = Wrapped(pipe, gated=True)
    batcher = MicroBatcher(wrapped, max_batch=1, wait_ms=1)  # type: ignore[arg-type]

    async def run() -> tuple[list[object], BaseException | None]:
        await batcher.start()
        pending = [asyncio.create_task(batcher.predict([t], None)) for t in GOOD[:3]]
        while not wrapped.entered.is_set():
            await asyncio.sleep(0.01)
        stopping = asyncio.create_task(batcher.stop(timeout=60))
        await asyncio.sleep(0.05)  # stop() has begun: it refuses new requests while it drains
        try:
            await batcher.predict(["too late"], None)
            refused = None
        except Unavailable as exc:
            refused = exc
        wrapped.gate.set()
        await stopping
        return [await p for p in pending], refused

    results, refused = asyncio.run(run())
    assert results == [pipe([t]) for t in GOOD[:3]]
    assert isinstance(refused, Unavailable) and "shutting down" in str(refused)


def test_graceful_shutdown_finishes_requests_in_flight(pipe: Pipeline) -> None:
    """A real uvicorn server told to exit (what SIGTERM does) while one request is in the model and another one
    waits in the queue: both get their 200 before the server ends."""
    import uvicorn

    wrapped = Wrapped(pipe, gated=True)
    app = create_app(wrapped, max_batch=1, wait_ms=1, drain_s=60)  # type: ignore[arg-type]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=60))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        threading.Event().wait(0.02)
    results: dict[str, httpx.Response] = {}

    def post(text: str) -> None:
        results[text] = httpx.post(f"http://127.0.0.1:{port}/predict", json={"texts": [text]}, timeout=120)

    clients = [threading.Thread(target=post, args=(t,)) for t in GOOD[:2]]
    clients[0].start()
    assert wrapped.entered.wait(60)
    clients[1].start()
    while app.state.batcher.queued < 1:
        threading.Event().wait(0.02)
    server.should_exit = True  # as on SIGTERM
    wrapped.gate.set()
    for c in clients:
        c.join(120)
    thread.join(120)
    assert not thread.is_alive()
    assert {t: r.status_code for t, r in results.items()} == {t: 200 for t in GOOD[:2]}
    assert [results[t].json()["predictions"] for t in GOOD[:2]] == [pipe([t]) for t in GOOD[:2]]


def test_cli_serve_options_reach_the_server(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from polytask.cli import app as cli

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(app=app, **kwargs))
    r = CliRunner().invoke(cli, ["serve", str(trained[1].best_dir), "--port", "8123", "--max-body-bytes", "100",
                                 "--max-queue", "5", "--graceful-s", "7", "--max-chars", "10"])
    assert r.exit_code == 0, r.output
    assert seen["port"] == 8123 and seen["timeout_graceful_shutdown"] == 7
    assert seen["app"].state.batcher.max_queue == 5
    with TestClient(seen["app"]) as c:
        assert "the limit is 100 bytes" in c.post("/predict", json={"texts": ["x" * 200]}).json()["error"]
        assert "the limit is 10" in c.post("/predict", json={"texts": ["x" * 11]}).text
