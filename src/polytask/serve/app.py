"""HTTP server: ``GET /health``, ``GET /tasks``, ``POST /predict`` (OpenAPI docs at /docs).

Every request is validated (batch size, text length, task names) and answered with a 4xx that says what is wrong;
an unexpected failure becomes a 500 with a message, never a dead server.
"""

# no `from __future__ import annotations`: FastAPI must resolve the request models defined inside create_app

from contextlib import asynccontextmanager
from typing import Any, Union

from polytask.inference import Pipeline
from polytask.serve.batcher import MicroBatcher

SHORT = {"text": "single texts", "pair": "pairs", "entities": "entity pairs"}


def create_app(pipeline: Pipeline, max_batch: int = 64, max_chars: int = 5000, wait_ms: float = 5.0):
    """Build the FastAPI app around a loaded pipeline."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, field_validator

    batcher = MicroBatcher(pipeline, max_batch=max_batch, wait_ms=wait_ms)
    task_names = list(pipeline.model.tasks)

    class EntityPair(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: str
        e1: tuple[int, int] = Field(..., description="[start, end) character span of the first entity")
        e2: tuple[int, int] = Field(..., description="[start, end) character span of the second entity")

    class QuestionContext(BaseModel):
        model_config = ConfigDict(extra="forbid")
        question: str
        context: str

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        texts: list[Union[str, tuple[str, str], QuestionContext, EntityPair]] = Field(
            ..., min_length=1, max_length=max_batch,
            description=f"1 to {max_batch} inputs of one kind: texts; [text, text_pair] pairs or {{question, "
                        "context}} for pair and QA tasks; {text, e1, e2} (or a text with <e1>..</e1> and "
                        "<e2>..</e2> markers) for relation classification")
        tasks: list[str] | None = Field(None, description="task names (default: every task for this input kind)")

        @field_validator("texts")
        @classmethod
        def _lengths(cls, texts: list[Any]) -> list[Any]:
            kinds = {pipeline.kind_of(_plain(t)) for t in texts}
            if len(kinds) > 1:
                mixed = " and ".join(SHORT[k] for k in SHORT if k in kinds)
                raise ValueError(f"mix of {mixed}: send them in separate requests")
            for i, t in enumerate(texts):
                for p in _strings(t):
                    if not p.strip():
                        raise ValueError(f"texts[{i}] is empty")
                    if len(p) > max_chars:
                        raise ValueError(f"texts[{i}] has {len(p)} characters; the limit is {max_chars}")
            return texts

    class PredictResponse(BaseModel):
        predictions: list[dict[str, Any]]

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="polytask", version="1", lifespan=lifespan,
                  description="Every task of one multi-task model, from one encoder pass per batch.")
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"error": "invalid request", "problems": problems})

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=500, content={"error": f"{type(exc).__name__}: {exc}"})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "tasks": len(task_names), "model_calls": batcher.batches_run}

    @app.get("/tasks")
    async def tasks() -> dict[str, Any]:
        return pipeline.tasks

    @app.post("/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest) -> PredictResponse:
        if request.tasks:
            unknown = [t for t in request.tasks if t not in pipeline.model.tasks]
            if unknown:
                raise HTTPException(404, detail=f"unknown task(s) {', '.join(unknown)}; "
                                                f"available: {', '.join(task_names)}")
        inputs = [_plain(t) for t in request.texts]
        try:
            outputs = await batcher.predict(inputs, request.tasks, pipeline.kind_of(inputs[0]))
        except ValueError as exc:  # e.g. a pair task asked for single texts, an entity span outside the text
            raise HTTPException(422, detail=str(exc)) from None
        return PredictResponse(predictions=outputs)

    return app


def _plain(item: Any) -> Any:
    """A request item as a Pipeline input: a string, a (text, text_pair) tuple or a plain mapping."""
    if isinstance(item, str):
        return item
    if isinstance(item, (tuple, list)):
        return tuple(item)
    data = item.model_dump()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _strings(item: Any) -> list[str]:
    if isinstance(item, str):
        return [item]
    if isinstance(item, (tuple, list)):
        return list(item)
    return [v for v in item.model_dump().values() if isinstance(v, str)]


def serve(checkpoint: str, host: str = "127.0.0.1", port: int = 8000, **kwargs: Any) -> None:
    """Load the checkpoint and run uvicorn (blocking)."""
    import uvicorn

    app = create_app(Pipeline.from_pretrained(checkpoint), **kwargs)
    uvicorn.run(app, host=host, port=port, log_level="info")
