"""The HTTP server, in process: every endpoint, bad input, unknown tasks, concurrent requests (micro-batched)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient

from polytask.inference import Pipeline
from polytask.serve.app import create_app


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
