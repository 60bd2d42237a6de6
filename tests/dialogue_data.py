"""A tiny synthetic Schema-Guided Dialogue split in the real layout (gzip JSON dialogues + schema.json), with
patterns a few training steps learn: a weather service (span slot ``city``, categorical ``unit``) and a music
service (span slot ``artist``)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

CITIES = ["paris", "london", "tokyo", "berlin", "rome", "madrid", "oslo", "cairo"]
ARTISTS = ["adele", "queen", "prince", "bjork", "drake", "sting"]
SCHEMA = [
    {"service_name": "Weather_1", "description": "weather", "intents": [],
     "slots": [{"name": "city", "description": "", "is_categorical": False, "possible_values": []},
               {"name": "unit", "description": "", "is_categorical": True, "possible_values": ["celsius", "kelvin"]}]},
    {"service_name": "Music_1", "description": "music", "intents": [],
     "slots": [{"name": "artist", "description": "", "is_categorical": False, "possible_values": []}]},
]


def _user(text: str, service: str, intent: str, spans: list[tuple[str, str]], state: dict[str, list[str]],
          requested: list[str] = (), acts: list[tuple[str, str]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    slots = []
    for slot, value in spans:
        start = text.index(value)
        slots.append({"slot": slot, "start": start, "exclusive_end": start + len(value)})
    actions = [{"act": "INFORM", "slot": s, "values": [v], "canonical_values": [v]} for s, v in [*spans, *acts]]
    return {"speaker": "USER", "utterance": text, "frames": [{
        "service": service, "slots": slots, "actions": actions,
        "state": {"active_intent": intent, "requested_slots": list(requested), "slot_values": state}}]}


def _system(text: str, service: str) -> dict[str, Any]:
    return {"speaker": "SYSTEM", "utterance": text, "frames": [{"service": service, "slots": [], "actions": []}]}


def dialogue(rng: random.Random, number: int, service: str) -> dict[str, Any]:
    if service == "Weather_1":
        city, unit = rng.choice(CITIES), rng.choice(["celsius", "kelvin"])
        turns = [
            _user("what is the weather like", service, "GetWeather", [], {}),
            _system("which city ?", service),
            _user(f"in {city} please.", service, "GetWeather", [("city", city)], {"city": [city]}),
            _system("anything else ?", service),
            _user(f"show it in {unit} and is it windy", service, "GetWeather", [],
                  {"city": [city], "unit": [unit]}, ["wind"], [("unit", unit)]),
        ]
    else:
        artist = rng.choice(ARTISTS)
        turns = [_user(f"play a song by {artist}", service, "PlayMusic", [("artist", artist)], {"artist": [artist]}),
                 _system("playing it now .", service),
                 _user("what is the album", service, "PlayMusic", [], {"artist": [artist]}, ["album"])]
    return {"dialogue_id": f"1_{number:05d}", "services": [service], "turns": turns}


def write_sgd_split(folder: Path, dialogues: int, seed: int, services: tuple[str, ...] = ("Weather_1", "Music_1"),
                    files: int = 2) -> Path:
    """``folder/dialogues_00N.json.gz`` (``files`` of them) and ``folder/schema.json``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    made = [dialogue(rng, i, services[i % len(services)]) for i in range(dialogues)]
    per = -(-len(made) // files)
    for f in range(files):
        chunk = made[f * per:(f + 1) * per]
        (folder / f"dialogues_{f + 1:03d}.json.gz").write_bytes(gzip.compress(json.dumps(chunk).encode()))
    (folder / "schema.json").write_text(json.dumps([s for s in SCHEMA if s["service_name"] in services]))
    return folder


def sgd_config(root: Path, encoder: str, out: Path, **train_keys: Any) -> dict[str, Any]:
    """Intent, requested slots, slot tags and dialogue state of one sgd source; test holds an unseen service."""
    write_sgd_split(root / "train", 40, 1)
    write_sgd_split(root / "dev", 10, 2)
    write_sgd_split(root / "test", 10, 3)
    schema = json.loads((root / "test" / "schema.json").read_text())  # an unseen service in test
    schema.append({"service_name": "Music_2", "description": "", "intents": [], "slots": SCHEMA[1]["slots"]})
    (root / "test" / "schema.json").write_text(json.dumps(schema))
    extra = [dialogue(random.Random(9), 900 + i, "Music_1") for i in range(4)]
    for d in extra:
        d["services"] = ["Music_2"]
        for turn in d["turns"]:
            turn["frames"][0]["service"] = "Music_2"
    (root / "test" / "dialogues_009.json.gz").write_bytes(gzip.compress(json.dumps(extra).encode()))
    return {
        "encoder": {"name": encoder, "max_length": 48},
        "datasets": {"sgd": {"format": "sgd", "train": str(root / "train"), "validation": str(root / "dev"),
                             "test": str(root / "test"), "breakdown": "seen",
                             "options": {"history_turns": 2, "seen_schema": "../train/schema.json"}}},
        "tasks": {"intent": {"type": "classification", "dataset": "sgd", "label": "intent",
                             "unseen_labels": "count_as_wrong"},
                  "requested": {"type": "classification", "dataset": "sgd", "label": "requested",
                                "multi_label": True},
                  "slots": {"type": "token_classification", "dataset": "sgd", "label": "tags"},
                  "state": {"type": "dialogue_state", "dataset": "sgd"}},
        "train": {"output_dir": str(out), "lr": 3e-3, "batch_size": 16, "epochs": 12, "seed": 7,
                  "progress_bar": False, **train_keys},
        "evaluation": {"every_steps": 10000},
    }
