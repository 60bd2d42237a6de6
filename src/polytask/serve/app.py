"""HTTP server: ``GET /health``, ``GET /tasks``, ``POST /predict`` (OpenAPI docs at /docs).

Every request is validated (batch size, text length, task names) and answered with a 4xx that says what is wrong;
an unexpected failure becomes a 500 with a message, never a dead server.
"""

# no `from __future__ import annotations`: FastAPI must resolve the request models defined inside create_app

from contextlib import asynccontextmanager
from typing import Any, Union

from polytask.inference import Pipeline
from polytask.serve.batcher import MicroBatcher


def create_app(pipeline: Pipeline, max_batch: int = 64, max_chars: int = 5000, wait_ms: float = 5.0):
    """Build the FastAPI app around a loaded pipeline."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, field_validator

    batcher = MicroBatcher(pipeline, max_batch=max_batch, wait_ms=wait_ms)
    task_names = list(pipeline.model.tasks)

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        texts: list[Union[str, tuple[str, str]]] = Field(
            ..., min_length=1, max_length=max_batch,
            description=f"1 to {max_batch} texts, or [text, text_pair] pairs for pair tasks")
        tasks: list[str] | None = Field(None, description="task names (default: every task for this input kind)")

        @field_validator("texts")
        @classmethod
        def _lengths(cls, texts: list[Any]) -> list[Any]:
            kinds = {isinstance(t, str) for t in texts}
            if len(kinds) > 1:
                raise ValueError("mix of single texts and pairs: send them in separate requests")
            for i, t in enumerate(texts):
                parts = [t] if isinstance(t, str) else list(t)
                for p in parts:
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
        inputs = [t if isinstance(t, str) else tuple(t) for t in request.texts]
        try:
            outputs = await batcher.predict(inputs, request.tasks)
        except ValueError as exc:  # e.g. a pair task asked for single texts
            raise HTTPException(422, detail=str(exc)) from None
        return PredictResponse(predictions=outputs)

    return app


def serve(checkpoint: str, host: str = "127.0.0.1", port: int = 8000, **kwargs: Any) -> None:
    """Load the checkpoint and run uvicorn (blocking)."""
    import uvicorn

    app = create_app(Pipeline.from_pretrained(checkpoint), **kwargs)
    uvicorn.run(app, host=host, port=port, log_level="info")
