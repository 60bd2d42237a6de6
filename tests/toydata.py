"""Small synthetic data sets for the QA and relation task types, in the real formats (SQuAD JSON, SemEval-2010 Task
8 text, SpERT JSON), with patterns a tiny model learns in a few epochs."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from conftest import ARTISTS, BAD, CITIES, FILLER, GOOD, make_sentiment_csv

ORGS = ["acme", "globex", "initech", "umbrella"]


def make_squad(path: Path, n: int, seed: int, long_every: int = 4) -> None:
    """Questions about the weather city ("in X") or the musician ("by Y"); every ``long_every``-th context is
    padded with filler so it spans several windows at max_length 32, with the answer late in it."""
    rng = random.Random(seed)
    articles = []
    for a in range(max(1, n // 2)):
        paragraphs = []
        for p in range(2):
            i = 2 * a + p
            if i >= n:
                break
            city, artist = rng.choice(CITIES), rng.choice(ARTISTS)
            filler = " ".join(rng.choice(FILLER) for _ in range(30 if i % long_every == 0 else 3))
            context = f"{filler} the weather in {city} is {rng.choice(GOOD)} and the music by {artist} is loud ."
            if rng.random() < 0.5:
                question, answer = "where is the weather", city
                start = context.index(f" in {city} ") + 4
            else:
                question, answer = "who makes the music", artist
                start = context.index(f" by {artist} ") + 4
            answers = [{"text": answer, "answer_start": start}, {"text": answer, "answer_start": start}]
            paragraphs.append({"context": context, "qas": [{"id": f"q{i}", "question": question,
                                                            "answers": answers}]})
        articles.append({"title": f"article {a}", "paragraphs": paragraphs})
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")


RELATIONS = {"in": "Content-Container(e1,e2)", "makes": "Product-Producer(e2,e1)", "and": "Other"}


def make_semeval(path: Path, n: int, seed: int, start_id: int = 1) -> None:
    """SemEval-2010 Task 8 blocks; the relation is given by the word between the two entities (direction too)."""
    rng = random.Random(seed)
    blocks = []
    for i in range(n):
        verb = rng.choice(list(RELATIONS))
        a, b = rng.sample(FILLER[:20], 2)
        sentence = f"the <e1>{a}</e1> {verb} the <e2>{b}</e2> {rng.choice(GOOD + BAD)} ."
        blocks.append(f'{start_id + i}\t"{sentence}"\n{RELATIONS[verb]}\nComment:\n')
    path.write_text("\n".join(blocks) + "\n", encoding="utf-8")


def make_spert(path: Path, n: int, seed: int) -> None:
    """SpERT JSON: "<artist> lives in <city>" (Live_In), "<artist> works for <org>" (Work_For), plus filler."""
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        person, city, org = rng.choice(ARTISTS), rng.choice(CITIES), rng.choice(ORGS)
        lead = [rng.choice(FILLER) for _ in range(rng.randint(0, 2))]
        if rng.random() < 0.5:
            tokens = lead + [person, "lives", "in", city, "."]
            other = (len(lead) + 3, "Loc", "Live_In")
        else:
            tokens = lead + [person, "works", "for", org, "."]
            other = (len(lead) + 3, "Org", "Work_For")
        entities = [{"type": "Peop", "start": len(lead), "end": len(lead) + 1},
                    {"type": other[1], "start": other[0], "end": other[0] + 1}]
        items.append({"tokens": tokens, "entities": entities,
                      "relations": [{"type": other[2], "head": 0, "tail": 1}]})
    path.write_text(json.dumps(items), encoding="utf-8")


def qa_relations_config(root: Path, encoder: str, out: Path, **train_keys: Any) -> dict[str, Any]:
    """QA, relation classification, joint relation extraction and sentiment in one model (data written to
    ``root``; a ``train`` of it learns every task in a few seconds)."""
    for split, n, seed in (("train", 160, 1), ("dev", 40, 2), ("test", 40, 3)):
        make_squad(root / f"qa_{split}.json", n, seed)
        make_semeval(root / f"rel_{split}.txt", n, seed, start_id=1000 * seed)
        make_spert(root / f"re_{split}.json", n, seed)
        make_sentiment_csv(root / f"sent_{split}.csv", n, seed)

    def files(prefix: str, suffix: str) -> dict[str, str]:
        return {s: str(root / f"{prefix}_{f}{suffix}") for s, f in (("train", "train"), ("validation", "dev"),
                                                                     ("test", "test"))}

    return {
        "encoder": {"name": encoder, "max_length": 48},
        "datasets": {"qa": {"format": "squad", "text": "question", "text_pair": "context", **files("qa", ".json")},
                     "rel": {"format": "semeval", **files("rel", ".txt")},
                     "re": {"format": "spert", "text": "tokens", **files("re", ".json")},
                     "sent": {"format": "csv", "text": "sentence", **files("sent", ".csv")}},
        "tasks": {"qa": {"type": "span_qa", "dataset": "qa", "doc_stride": 16},
                  "relation": {"type": "relation_classification", "dataset": "rel"},
                  "joint": {"type": "relation_extraction", "dataset": "re"},
                  "sentiment": {"type": "classification", "dataset": "sent", "label": "label"}},
        "train": {"output_dir": str(out), "lr": 3e-3, "batch_size": 16, "epochs": 4, "seed": 7,
                  "progress_bar": False, **train_keys},
    }


def make_parallel(stem: Path, n: int, seed: int, suffixes: tuple[str, str] = ("src", "tgt")) -> None:
    """Line-aligned ``STEM.src`` / ``STEM.tgt``: the target names the city and the artist of the source, in that
    order (a copy task a tiny decoder learns in a few steps)."""
    rng = random.Random(seed)
    sources, targets = [], []
    for _ in range(n):
        city, artist = rng.choice(CITIES), rng.choice(ARTISTS)
        sources.append(f"{rng.choice(FILLER)} music by {artist} in {city} {rng.choice(FILLER)}")
        targets.append(f"{city} {artist}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.{suffixes[0]}").write_text("\n".join(sources) + "\n", encoding="utf-8")
    Path(f"{stem}.{suffixes[1]}").write_text("\n".join(targets) + "\n", encoding="utf-8")
