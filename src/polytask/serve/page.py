"""The page to try a model (``GET /``) and what it reads about the model (``GET /info``).

The page is three static files shipped in the package (``serve/static``: HTML, JavaScript, CSS; no CDN, no build
step, so it works offline). Its script asks ``GET /info`` for the tasks, label sets and stored metrics, sends what a
person types to the same ``POST /predict`` every client uses (with generation settings when a task generates
text, and with the history and the last returned state when the tasks read dialogue turns), and draws each task's
answer. It writes text into the
page only as text nodes, never as HTML, and a Content-Security-Policy header allows scripts and styles from the
server alone.
"""

# no `from __future__ import annotations`: FastAPI reads the response model's annotations at run time

import logging
import math
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, Field

from polytask.inference import Pipeline

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# the page's own files only: no inline script or style, no other origin, no framing by other sites
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Limits(BaseModel):
    max_batch: int = Field(..., description="most inputs in one request (--max-batch)")
    max_chars: int = Field(..., description="most characters in one text (--max-chars)")
    max_beams: int = Field(..., description="most beams a request may ask of a generating task (--max-beams)")
    max_new_tokens: int = Field(..., description="most tokens a request may ask a generating task to write "
                                                 "(--max-new-tokens)")


class ModelInfo(BaseModel):
    tasks: dict[str, dict[str, Any]] = Field(
        ..., description="per task, what GET /tasks gives (type, input kind, label set) plus primary_metric, "
                         "params (the task's settings, min_score, threshold, num_beams and max_new_tokens "
                         "included) and generates (true for a task that writes text, such as seq2seq)")
    metrics: Optional[dict[str, Any]] = Field(
        ..., description="the checkpoint's metrics.json: the saved model's validation and test scores (per task "
                         "under validation.tasks and test.tasks), training steps and seconds; null when it has none")
    encoder: dict[str, Any] = Field(..., description="name, model_type, layers, hidden_size, max_length, parameters")
    limits: Limits


def read_metrics(checkpoint: str | Path) -> Optional[dict[str, Any]]:
    """``CHECKPOINT/metrics.json`` (:func:`polytask.checkpoint.read_metrics`) with non-finite numbers as None (JSON
    has no NaN), or None when there is none. An unreadable file is logged and served as None: the model still
    answers, only the page shows no scores."""
    from polytask.checkpoint import read_metrics as stored_metrics

    try:
        data = stored_metrics(checkpoint)
    except (OSError, ValueError) as exc:
        log.warning("%s: not readable (%s); the page shows no stored metrics", Path(checkpoint) / "metrics.json", exc)
        return None
    return _finite(data) if isinstance(data, dict) else None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def model_info(pipeline: Pipeline, metrics: Optional[dict[str, Any]], limits: Limits) -> ModelInfo:
    """What the page shows about the served model, read from the loaded model (so it is what answers)."""
    model = pipeline.model
    # ``generates`` is the task type's declared capability: the page offers generation settings by it, not by name
    tasks = {name: {**described, "primary_metric": model.tasks[name].primary_metric,
                    "params": model.tasks[name].params.model_dump(mode="json"),
                    "generates": bool(model.tasks[name].generates)}
             for name, described in pipeline.tasks.items()}
    config = getattr(getattr(model, "encoder", None), "config", None)
    name = ((getattr(model, "run_config", None) or {}).get("encoder") or {}).get("name")
    encoder = {
        # a local folder is named by its last part only: the page need not show the server's directory layout
        "name": Path(name).name if isinstance(name, str) and "/" in name else name,
        "model_type": getattr(config, "model_type", None),
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "max_length": getattr(model, "max_length", None),
        "parameters": model.num_parameters() if hasattr(model, "num_parameters") else None,
    }
    return ModelInfo(tasks=tasks, metrics=metrics, encoder=encoder, limits=limits)


def add_page(app: Any, pipeline: Pipeline, metrics: Optional[dict[str, Any]], limits: Limits) -> None:
    """Register ``GET /`` (the page, not in the OpenAPI schema), ``/static/*`` (its script and style) and
    ``GET /info`` (in the schema) on a FastAPI ``app``; ``limits`` are the server's request limits."""
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    html = (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @app.get("/info", response_model=ModelInfo)
    async def info() -> ModelInfo:
        """The served model: its tasks (label sets, settings), the scores stored with it, its encoder, the
        request limits."""
        return model_info(pipeline, metrics, limits)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
