"""The ``hf`` reader: a Hugging Face dataset, saved with ``save_to_disk`` or loaded by name (needs ``datasets``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from polytask.data.readers import ReaderOptions, _reader, _require_rows
from polytask.data.rows import Row
from polytask.errors import DataError, PolytaskError



# -- Hugging Face datasets --------------------------------------------------------------------------------------------
@_reader("hf", "hf_config")
def read_hf(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """A Hugging Face dataset: a folder saved with save_to_disk, else a hub name or loading script (needs a split).

    Class-label columns (and lists of them, e.g. NER tags) give their label names, not integer ids, and the id -1
    (used for unlabelled test splits) gives None, i.e. a missing label.
    """
    datasets = _import_datasets()
    if not split:
        raise DataError("the hf format needs a split name (train, validation, ...)", location=f"hf:{path}")
    where = f"hf:{path}[{split}]"
    data = _load_hf(datasets, path, options.hf_config, split, where)
    columns = data.to_dict()
    decoders = {name: _label_decoder(feature) for name, feature in data.features.items()}
    for name, decode in decoders.items():
        if decode is not None:
            columns[name] = [decode(v) for v in columns[name]]
    names = list(columns)
    rows = [Row(dict(zip(names, values)), f"{where} row {i}", where, i)
            for i, values in enumerate(zip(*columns.values()), 1)]
    return _require_rows(rows, where)


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise PolytaskError("the hf data format needs the `datasets` package: pip install 'polytask[hf]'") from exc
    return datasets


def _load_hf(datasets: Any, path: str, config: str | None, split: str, where: str) -> Any:
    local = Path(path)
    if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
        return _from_disk(datasets, path, config, split, where)
    if path.startswith((".", "/", "~")) and not local.exists():  # clearly meant as a local path, not a hub name
        raise DataError("file not found", file=path)
    try:
        return datasets.load_dataset(path, config, split=split)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ValueError...)
        raise DataError(f"could not load the Hugging Face dataset {path!r}"
                        f"{f' (config {config!r})' if config else ''}: {type(exc).__name__}: {exc}. Check the name, "
                        "config and split; offline (HF_DATASETS_OFFLINE=1) only cached datasets load",
                        location=where) from exc


def _from_disk(datasets: Any, path: str, config: str | None, split: str, where: str) -> Any:
    if config is not None:
        raise DataError("hf_config applies to hub datasets only, not to a folder saved with save_to_disk",
                        location=where, field="options.hf_config", value=config)
    try:
        data = datasets.load_from_disk(path)
    except Exception as exc:  # a damaged folder: datasets raises JSON, Arrow, file and key errors
        raise DataError(f"could not load the dataset saved with save_to_disk: {type(exc).__name__}: {exc}",
                        location=where) from exc
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise DataError("split not found in the saved dataset", location=where, field="split", value=split,
                            allowed=", ".join(data))
        return data[split]
    return data  # a single saved Dataset is the split itself


def _label_decoder(feature: Any) -> Callable[[Any], Any] | None:
    """A function turning class-label ids into names for this feature, or None when it holds no class labels."""
    names = getattr(feature, "names", None)
    if type(feature).__name__ == "ClassLabel" and names is not None:
        return lambda v: None if v is None or v < 0 else names[v]
    inner = getattr(feature, "feature", None)  # List / Sequence / LargeList of something
    decode = _label_decoder(inner) if inner is not None and not isinstance(inner, dict) else None
    if decode is None:
        return None
    return lambda v: None if v is None else [decode(x) for x in v]
