"""Model cards: the ``README.md`` of a checkpoint folder, in the Hugging Face convention.

YAML front matter (``library_name: polytask``, tags, datasets, base_model, language when the encoder's own card
says it, and a ``model-index`` of the measured metrics of every task), then the tasks with their label sets and
metrics, the training settings, how to load and predict, and the limits. Written from what the checkpoint stores
(``config.json``, ``run_config.yaml``, ``metrics.json``), so ``polytask push`` can write one for a folder saved
before cards existed; the front matter goes through ``huggingface_hub.ModelCardData``, the Hub's own schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polytask.model import MultiTaskModel
    from polytask.tasks.stock import StockHead

ALIASES = {"minilm": "sentence-transformers/all-MiniLM-L6-v2"}  # what the packaged encoders are on the Hub
# polytask metric -> the Hub's metric id (model-index ``type``); the polytask name stays as the metric's ``name``
HUB_METRICS = {"macro_f1": "f1", "micro_f1": "f1", "pearson": "pearsonr", "spearman": "spearmanr",
               "token_accuracy": "accuracy"}
NOT_METRICS = {"examples", "temperature", "min_score", "coverage", "unseen_labels"}
SPLITS = ("test", "validation")


def task_results(metrics: dict[str, Any] | None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """task -> [(split, {metric: value})] from a metrics.json: a training summary (``test`` / ``validation``, each
    {"tasks": {...}}) or a fine-tuning one (``tasks``: {task: {"split": ..., metric: value}})."""
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for split in SPLITS:
        for name, values in ((metrics or {}).get(split) or {}).get("tasks", {}).items():
            out.setdefault(name, []).append((split, values))
    for name, values in ((metrics or {}).get("tasks") or {}).items():
        if isinstance(values, dict) and values.get("split") in SPLITS:
            out.setdefault(name, []).append((values["split"], {k: v for k, v in values.items() if k != "split"}))
    return out


def _metric_names(entry: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """The task type's metrics (primary first) when its type is registered, else every number that is one."""
    from polytask.tasks import TASKS

    params = entry["params"]
    if params.get("type") in TASKS:
        cls = TASKS.get(params["type"])
        return [m for m in cls.metric_names(cls.Params.model_validate(params)) if m in values]
    return [k for k, v in values.items() if isinstance(v, (int, float)) and k not in NOT_METRICS
            and not k.startswith("ece")]


def _hub_task(kind: str) -> str:
    from polytask.tasks import TASKS

    return (TASKS.get(kind).hub_task if kind in TASKS else None) or "text-classification"


def base_model(run_config: dict[str, Any] | None) -> str | None:
    """The encoder as a Hub id: an alias's Hub name, or the name as configured when it is not a local folder."""
    name = ((run_config or {}).get("encoder") or {}).get("name")
    if not name:
        return None
    if name in ALIASES:
        return ALIASES[name]
    return None if Path(name).expanduser().exists() or name.startswith((".", "/", "~")) else str(name)


def encoder_language(run_config: dict[str, Any] | None) -> Any:
    """The ``language`` of the encoder's own model card, when it is a local folder (or a packaged alias) with one."""
    import yaml

    from polytask.encoder import resolve_encoder_name

    name = ((run_config or {}).get("encoder") or {}).get("name")
    try:
        readme = Path(resolve_encoder_name(name)) / "README.md" if name else None
        text = readme.read_text(encoding="utf-8") if readme is not None and readme.is_file() else ""
        if text.startswith("---"):
            return (yaml.safe_load(text.split("---", 2)[1]) or {}).get("language")
    except (ImportError, OSError, ValueError, yaml.YAMLError, IndexError):  # no language rather than no checkpoint
        return None
    return None


def _dataset_id(name: str, spec: dict[str, Any]) -> str:
    return str(spec.get("train") or name) if spec.get("format") == "hf" else name


def front_matter(config: dict[str, Any], run_config: dict[str, Any] | None, metrics: dict[str, Any] | None,
                 model_name: str) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    datasets = (run_config or {}).get("datasets") or {}
    results = []
    for name, runs in task_results(metrics).items():
        entry = config["tasks"].get(name)
        if entry is None:
            continue
        ds = entry["params"].get("dataset", name)
        for split, values in runs:
            for metric in _metric_names(entry, values):
                results.append(EvalResult(
                    task_type=_hub_task(entry["params"]["type"]), task_name=f"{name} ({entry['params']['type']})",
                    dataset_type=_dataset_id(ds, datasets.get(ds, {})), dataset_name=ds, dataset_split=split,
                    metric_type=HUB_METRICS.get(metric, metric), metric_name=metric,
                    metric_value=round(float(values[metric]), 6)))
    tags = ["polytask", "multi-task"] + sorted({_hub_task(e["params"]["type"]) for e in config["tasks"].values()})
    data = ModelCardData(library_name="polytask", tags=tags, base_model=base_model(run_config),
                         datasets=[_dataset_id(n, s) for n, s in datasets.items()] or None,
                         language=encoder_language(run_config), model_name=model_name if results else None,
                         eval_results=results or None)
    return data.to_yaml() + "\n"


def fmt_metric(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _labels(state: dict[str, Any]) -> str:
    for key in ("labels", "tags"):
        if isinstance(state.get(key), list):
            shown = ", ".join(map(str, state[key][:8])) + (", ..." if len(state[key]) > 8 else "")
            return f"{len(state[key])}: {shown}"
    if "mean" in state:
        return f"a real value (training mean {state['mean']:.4g}, std {state['std']:.4g})"
    return "-"


def _input(entry: dict[str, Any]) -> str:
    spec = entry.get("input") or {}
    return "text pair" if spec.get("pair") else str(spec.get("type", "text"))


def tasks_table(config: dict[str, Any], metrics: dict[str, Any] | None) -> list[str]:
    results = task_results(metrics)
    lines = ["| task | type | input | labels | metrics |", "|---|---|---|---|---|"]
    for name, entry in config["tasks"].items():
        shown = []
        for split, values in results.get(name, []):
            names = _metric_names(entry, values)
            count = f", {values['examples']} examples" if "examples" in values else ""
            shown.append(", ".join(f"{m} {fmt_metric(values[m])}" for m in names) + f" ({split}{count})")
        lines.append(f"| {name} | {entry['params']['type']} | {_input(entry)} | {_cell(_labels(entry['state']))} | "
                     f"{_cell('; '.join(shown) or 'not measured')} |")
    return lines


def training_lines(config: dict[str, Any], run_config: dict[str, Any] | None,
                   metrics: dict[str, Any] | None) -> list[str]:
    enc = config["encoder"]
    rc = run_config or {}
    name = (rc.get("encoder") or {}).get("name", "?")
    hub = base_model(run_config)
    lines = [f"- Encoder: `{name}`{f' ({hub})' if hub and hub != name else ''}, {enc['config'].get('model_type')}, "
             f"{enc['config'].get('num_hidden_layers')} layers, hidden {enc['config'].get('hidden_size')}; "
             f"max_length {enc.get('max_length')}, pooling `{enc['pooling']}`, task embedding "
             f"{'yes' if enc.get('task_embedding') else 'no'}"]
    if not rc:
        return lines + ["- No `run_config.yaml` stored: the data and settings of the run are unknown."]
    lines.append("- Data:")
    sources: dict[str, list[str]] = {}
    for task, entry in config["tasks"].items():
        sources.setdefault(entry["params"].get("dataset", "?"), []).append(task)
    for ds, spec in (rc.get("datasets") or {}).items():
        splits = ", ".join(f"{s} `{spec[s]}`" for s in ("train", "validation", "test") if spec.get(s))
        lines.append(f"  - `{ds}` ({spec.get('format')}; tasks {', '.join(sources.get(ds, [])) or '-'}): {splits}")
    t = rc.get("train") or {}
    plugin = "; ".join(f"{k} `{(rc.get(k) or {}).get('name', '?')}`" for k in ("sampler", "weighting", "gradients"))
    lines.append(f"- {plugin}")
    length = f"max_steps {t['max_steps']}" if t.get("max_steps") else f"epochs {t.get('epochs')}"
    lines.append(f"- lr {t.get('lr')}, {length}, batch_size {t.get('batch_size')}, warmup_ratio "
                 f"{t.get('warmup_ratio')}, schedule {t.get('schedule')}, precision {t.get('precision')}, seed "
                 f"{t.get('seed')}")
    m = metrics or {}
    if "step" in m:
        lines.append(f"- Saved at step {m['step']}" + (f", selected on `{m['metric']}` = {fmt_metric(m['best_metric'])}"
                                                       if m.get("best_metric") is not None and m.get("metric") else ""))
    temps = [f"{t_}.{h} {v:.3g}" for t_, e in config["tasks"].items() for h, v in (e["state"].get("temperature")
                                                                                   or {}).items()]
    if temps:
        lines.append(f"- Temperatures (fitted on validation): {', '.join(temps)}")
    return lines


def checkpoint_card(config: dict[str, Any], run_config: dict[str, Any] | None, metrics: dict[str, Any] | None,
                    repo_id: str | None = None) -> str:
    """The README.md of a checkpoint folder: front matter, tasks, training, use, limits."""
    out_dir = ((run_config or {}).get("train") or {}).get("output_dir")
    name = repo_id.split("/")[-1] if repo_id else (Path(out_dir).name if out_dir else "polytask-model")
    where = repo_id or "OWNER/NAME"
    measured = task_results(metrics)
    unmeasured = [t for t in config["tasks"] if t not in measured]
    parts = [f"---\n{front_matter(config, run_config, metrics, name)}---\n", f"# {name}\n",
             f"A [polytask](https://pypi.org/project/polytask/) multi-task model: one shared encoder and "
             f"{len(config['tasks'])} task head(s) ({', '.join(config['tasks'])}), all answered from one encoder pass.",
             "", "## Tasks", "", *tasks_table(config, metrics), "", "## Training", "",
             *training_lines(config, run_config, metrics), "", "## Use", "",
             "```bash\npip install polytask\npolytask predict PATH_TO_THIS_FOLDER \"your text\"   # every task, JSON"
             "\npolytask serve PATH_TO_THIS_FOLDER                   # HTTP API\n```", "",
             "```python\nfrom huggingface_hub import snapshot_download\nfrom polytask.inference import Pipeline\n\n"
             f"pipe = Pipeline.from_pretrained(snapshot_download(\"{where}\"))  # or a local folder\n"
             "print(pipe([\"your text\"]))\n```", "",
             "One task can also go into any transformers-based stack: `polytask export PATH --format hf --task "
             "NAME` writes a folder the stock `AutoModelFor...` classes load (when the head allows it).", "",
             "## Limits", "",
             "- Every head answers for every input, including texts far from its training data: a head picks one "
             "of its own labels for anything it is given, and its score says how sure it is among those labels, "
             "not whether the text belongs to its domain.",
             "- The metrics above were measured on the named split of each task's own data set (see Training), "
             "with the label sets learned from its training split; they say little about other domains, "
             "languages or label definitions.",
             f"- Texts longer than {config['encoder'].get('max_length')} tokens are cut (span QA reads long "
             "contexts in windows)."]
    if unmeasured:
        parts.append(f"- No stored evaluation for {', '.join(unmeasured)} (a folder saved before evaluation, e.g. "
                     "`last/`: see the run's `metrics.jsonl`, or run `polytask evaluate`).")
    return "\n".join(parts) + "\n"


def model_card(model: MultiTaskModel, metrics: dict[str, Any] | None) -> str:
    from polytask.checkpoint import model_config

    return checkpoint_card(model_config(model), model.run_config, metrics)


def export_card(model: MultiTaskModel, task: str, spec: StockHead, source: str, difference: float) -> str:
    """The README.md of a ``polytask export --format hf`` folder: what was exported, how to load it, what differs."""
    from polytask.checkpoint import model_config

    config = model_config(model)
    entry = config["tasks"][task]
    from huggingface_hub import ModelCardData

    meta = ModelCardData(library_name="transformers", tags=["polytask", _hub_task(entry["params"]["type"])],
                         base_model=base_model(model.run_config), language=encoder_language(model.run_config),
                         pipeline_tag=_hub_task(entry["params"]["type"]))
    notes = [f"- {n}" for n in spec.notes]
    return "\n".join([
        f"---\n{meta.to_yaml()}\n---\n", f"# {task} ({entry['params']['type']}), exported from polytask\n",
        f"Task `{task}` of the polytask checkpoint `{source}` as a stock `{spec.auto_class}`: the encoder and "
        f"this task's head only. Labels: {_cell(_labels(entry['state']))}.", "",
        f"Measured against polytask on sample texts: largest relative difference {difference:.1e}.", "",
        "```python\nimport transformers\n\n"
        f"model = transformers.{spec.auto_class}.from_pretrained(\"PATH_TO_THIS_FOLDER\")\n"
        "tokenizer = transformers.AutoTokenizer.from_pretrained(\"PATH_TO_THIS_FOLDER\")\n```", "",
        *(["## What differs from polytask", "", *notes, ""] if notes else []),
        "The metrics and training settings are in the source checkpoint's README.md.", ""])
