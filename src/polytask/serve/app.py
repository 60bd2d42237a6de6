"""HTTP server: ``GET /health``, ``GET /tasks``, ``GET /info``, ``POST /predict`` (OpenAPI docs at /docs), and a page
to try the model at ``/`` (``polytask.serve.page``).

Every request is validated on its own (body size, batch size, text length, valid Unicode, task names, what the
tasks read) and answered with a 4xx that says what is wrong before it can join a micro-batch with others; a model
call that merged several requests and failed is run again per request, so a bad request fails alone. An unexpected
failure becomes a 500 with a message, never a dead server; a request not answered within ``timeout_s`` gets 504.
"""

# no `from __future__ import annotations`: FastAPI must resolve the request models defined inside create_app

import asyncio
import logging
import re
from contextlib import asynccontextmanager
from typing import Any, Optional, Union

from polytask.inference import Pipeline
from polytask.serve.batcher import MicroBatcher, Unavailable
from polytask.serve.limits import BodyLimit
from polytask.serve.page import Limits, add_page, read_metrics

log = logging.getLogger(__name__)

SHORT = {"text": "single texts", "pair": "pairs", "entities": "entity pairs", "dialogue": "dialogue turns"}
MAX_BODY_BYTES = 4 * 1024 * 1024
# lone UTF-16 halves: JSON can carry them ("\ud800") but they are not text; no tokenizer can encode them
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0/C1 control characters other than tab, line feed and carriage return: tokenizers drop or mangle them
# differently, so they become spaces (same length: every character offset in an answer stays valid)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_text(text: str, where: str, max_chars: int) -> str:
    """``text`` with control characters replaced by spaces; ValueError naming ``where`` if it is not usable."""
    bad = _SURROGATE.search(text)
    if bad is not None:
        raise ValueError(f"{where} holds a lone surrogate U+{ord(bad.group()):04X} at character {bad.start()}: "
                         "not valid Unicode (send UTF-8 text, or an escaped surrogate pair)")
    if len(text) > max_chars:
        raise ValueError(f"{where} has {len(text)} characters; the limit is {max_chars}")
    text = _CONTROL.sub(" ", text)
    if not text.strip():
        raise ValueError(f"{where} is empty (only white space or control characters)")
    return text


def create_app(pipeline: Pipeline, max_batch: int = 64, max_chars: int = 5000, wait_ms: float = 5.0,
               max_body_bytes: int = MAX_BODY_BYTES, timeout_s: Optional[float] = 30.0,
               max_queue: Optional[int] = 1024, drain_s: Optional[float] = 30.0,
               metrics: Optional[dict[str, Any]] = None, max_beams: int = 4, max_new_tokens: int = 256):
    """Build the FastAPI app around a loaded pipeline.

    ``max_batch``: most inputs in one request (and in one micro-batch); ``max_chars``: most characters in one text;
    ``wait_ms``: how long a request waits for others to share its model call; ``max_body_bytes``: larger bodies get
    413 before they are read; ``timeout_s``: a request not answered by then gets 504 (None: no limit);
    ``max_queue``: requests waiting beyond this get 503 (None: no limit); ``drain_s``: at shutdown, how long the
    queued requests may take to be answered; ``metrics``: the checkpoint's stored scores, shown by ``GET /info``
    and the page (:func:`polytask.serve.page.read_metrics`); ``max_beams`` / ``max_new_tokens``: the most a request
    may ask of a generating (seq2seq) task, whose cost grows with both.
    """
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, field_validator
    from starlette.exceptions import HTTPException as StarletteHTTPException

    batcher = MicroBatcher(pipeline, max_batch=max_batch, wait_ms=wait_ms, max_queue=max_queue)
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

    beam_limit, token_limit = max_beams, max_new_tokens  # (the class body below reuses the names)

    class Generation(BaseModel):
        model_config = ConfigDict(extra="forbid")
        num_beams: Optional[int] = Field(None, ge=1, le=beam_limit, description=f"1 (greedy) to {beam_limit} "
                                         "(beam search); default: the task's own")
        max_new_tokens: Optional[int] = Field(None, ge=1, le=token_limit, description="longest generated text "
                                              f"in tokens, at most {token_limit}; default: the task's own")

    class DialogueTurn(BaseModel):  # polytask.data.dialogue_input: a user turn, its history, the previous state
        model_config = ConfigDict(extra="forbid")
        text: str
        history: list[Union[str, dict[str, str]]] = Field(..., max_length=64, description="earlier turns, oldest "
                                                          "first: strings or {speaker: user|system, text}")
        previous_state: Optional[dict[str, Union[str, list[str]]]] = None
        service: Optional[str] = None

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        texts: list[Union[str, tuple[str, str], QuestionContext, EntityPair, DialogueTurn]] = Field(
            ..., min_length=1, max_length=max_batch,
            description=f"1 to {max_batch} inputs of one kind: texts; [text, text_pair] pairs or {{question, "
                        "context}} for pair and QA tasks; {text, e1, e2} (or a text with <e1>..</e1> and "
                        f"<e2>..</e2> markers) for relation classification; {{text, history, previous_state, "
                        f"service}} for dialogue tasks; each text at most {max_chars} "
                        "characters of valid Unicode (control characters are read as spaces)")
        tasks: Optional[list[str]] = Field(None, description="task names (default: every task for this input kind)")
        generation: Optional[Generation] = Field(None, description="settings of the generating (seq2seq) tasks for "
                                                                   "this request")

        @field_validator("texts")
        @classmethod
        def _clean(cls, texts: list[Any]) -> list[Any]:
            texts = [_cleaned(t, f"texts[{i}]", max_chars) for i, t in enumerate(texts)]
            kinds = {pipeline.kind_of(_plain(t)) for t in texts}
            if len(kinds) > 1:
                mixed = " and ".join(SHORT[k] for k in SHORT if k in kinds)
                raise ValueError(f"mix of {mixed}: send them in separate requests")
            return texts

    class PredictResponse(BaseModel):
        predictions: list[dict[str, Any]]

    class Problem(BaseModel):
        where: str
        problem: str

    class ErrorResponse(BaseModel):
        error: str = Field(..., description="what is wrong")
        problems: Optional[list[Problem]] = Field(None, description="each invalid part of the request")

    class Health(BaseModel):
        status: str
        tasks: int
        model_calls: int = Field(..., description="model calls that answered requests (micro-batches)")
        queued: int = Field(..., description="requests waiting for the model now")
        counters: dict[str, int] = Field(..., description="requests, inputs, model_calls, merged_calls, "
                                                          "split_calls, failed_requests, abandoned, refused; "
                                                          "mean micro-batch = inputs / model_calls")

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await batcher.start()
        yield
        await batcher.stop(drain_s)  # answer what is queued before the worker ends

    app = FastAPI(title="polytask", version="1", lifespan=lifespan,
                  description="Every task of one multi-task model, from one encoder pass per batch.")
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"error": "invalid request", "problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)}, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=500, content={"error": f"{type(exc).__name__}: {exc}"})

    def errors(*codes: int) -> dict[Union[int, str], dict[str, Any]]:
        text = {400: "unreadable body", 404: "unknown task", 413: "body over --max-body-bytes",
                422: "invalid request", 500: "unexpected failure", 503: "busy or shutting down",
                504: "no answer within --timeout-s"}
        return {code: {"model": ErrorResponse, "description": text[code]} for code in codes}

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(status="ok", tasks=len(task_names), model_calls=batcher.batches_run, queued=batcher.queued,
                      counters=batcher.stats.to_dict())

    @app.get("/tasks")
    async def tasks() -> dict[str, Any]:
        return pipeline.tasks

    @app.post("/predict", response_model=PredictResponse, responses=errors(400, 404, 413, 422, 500, 503, 504))
    async def predict(request: PredictRequest) -> PredictResponse:
        if request.tasks:
            unknown = [t for t in request.tasks if t not in pipeline.model.tasks]
            if unknown:
                raise HTTPException(404, detail=f"unknown task(s) {', '.join(unknown)}; "
                                                f"available: {', '.join(task_names)}")
        inputs = [_plain(t) for t in request.texts]
        try:
            # alone, before it meets other requests: tasks that do not read this kind, entity spans outside the text
            pipeline.check(inputs, request.tasks)
            settings = request.generation.model_dump(exclude_none=True) if request.generation else None
            outputs = await asyncio.wait_for(batcher.predict(inputs, request.tasks, pipeline.kind_of(inputs[0]),
                                                             settings or None), timeout_s)
        except ValueError as exc:  # a DataError of this request's own inputs (it failed alone)
            raise HTTPException(422, detail=str(exc)) from None
        except Unavailable as exc:
            raise HTTPException(503, detail=str(exc)) from None
        except asyncio.TimeoutError:
            raise HTTPException(504, detail=f"no answer within the request timeout of {timeout_s:g} s "
                                            "(--timeout-s)") from None
        except Exception as exc:  # noqa: BLE001  (this request failed alone; logged with its traceback, server goes on)
            log.exception("POST /predict failed")
            raise HTTPException(500, detail=f"{type(exc).__name__}: {exc}") from None
        return PredictResponse(predictions=outputs)

    add_page(app, pipeline, metrics, Limits(max_batch=max_batch, max_chars=max_chars, max_beams=max_beams,
                                            max_new_tokens=max_new_tokens))
    return app


def _cleaned(item: Any, where: str, max_chars: int) -> Any:
    """A request item with every text checked and cleaned by :func:`clean_text`."""
    if isinstance(item, str):
        return clean_text(item, where, max_chars)
    if isinstance(item, (tuple, list)):
        return tuple(clean_text(t, f"{where}[{j}]", max_chars) for j, t in enumerate(item))
    fields = {k: clean_text(v, f"{where}.{k}", max_chars) for k, v in item if isinstance(v, str)}
    return item.model_copy(update=fields)


def _plain(item: Any) -> Any:
    """A request item as a Pipeline input: a string, a (text, text_pair) tuple or a plain mapping."""
    if isinstance(item, str):
        return item
    if isinstance(item, (tuple, list)):
        return tuple(item)
    data = item.model_dump()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def serve(checkpoint: str, host: str = "127.0.0.1", port: int = 8000, graceful_s: float = 30.0,
          **kwargs: Any) -> None:
    """Load the checkpoint and run uvicorn (blocking). On SIGINT/SIGTERM the server stops accepting connections,
    lets the requests in flight finish (at most ``graceful_s`` seconds), then answers what is queued and exits."""
    import uvicorn

    app = create_app(Pipeline.from_pretrained(checkpoint), drain_s=graceful_s, metrics=read_metrics(checkpoint),
                     **kwargs)
    # uvicorn annotates timeout_graceful_shutdown as int but hands it to asyncio.wait_for, which takes float seconds
    uvicorn.run(app, host=host, port=port, log_level="info",
                timeout_graceful_shutdown=graceful_s)  # type: ignore[arg-type]
