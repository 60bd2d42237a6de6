"""The ``sgd`` reader: Schema-Guided Dialogue (Rastogi et al. 2020, "Towards Scalable Multi-domain Conversational
Agents: The Schema-Guided Dialogue Dataset"), one row per USER turn.

A path is a split folder holding ``dialogues_*.json`` or ``dialogues_*.json.gz`` files and the split's
``schema.json`` (the layout of the official repository, optionally gzip-compressed), or one dialogues file with
``schema.json`` beside it. Each dialogue is ``{"dialogue_id", "services": [service], "turns": [{"speaker": "USER" |
"SYSTEM", "utterance", "frames": [{"service", "slots": [{"slot", "start", "exclusive_end"}], "actions", "state"}]}]}``;
single-domain dialogues have one frame per turn, and a turn with another number of frames is an error. An empty user
utterance is an error; an empty system utterance (two GOODBYEs of the test split) is kept and skipped in histories.

Columns of a row (the user turn ``turn`` of dialogue ``dialogue_id``):

- ``text``: the user utterance; ``history``: every earlier turn, oldest first, as ``{"speaker": "user" | "system",
  "text"}`` (the ``dialogue`` input spec renders the last ``history_turns`` of them as the second segment);
- ``service``; ``intent`` (the frame's ``state.active_intent``, ``NONE`` included); ``requested`` (its
  ``requested_slots``, a list that may be empty);
- ``tags``: one BIO tag per word of ``text`` (words from :func:`dialogue_words`), from the frame's slot spans;
- ``state``: ``slot_values`` of the frame ({slot: [equivalent values]}, accumulated over the dialogue by the
  annotators); ``previous_state``: the state of the previous user turn ({} at the first);
- ``service_slots`` (the service's slot names) and ``categorical`` ({slot: possible values} of its categorical
  slots), both from ``schema.json``;
- ``seen``: ``seen`` or ``unseen``, whether the service is in the schema named by the ``seen_schema`` option (the
  training split's ``schema.json``; a relative path is read from the folder of the dialogue files, so
  ``../train/schema.json`` serves every split). Without the option the column is absent.

The ``dialogues_per_file: N`` option reads only the first N dialogues of each file: the files of a split are grouped
by service, so this samples every service with whole dialogues (``max_rows`` would keep the first services only).

A slot span must lie inside its utterance, start and end on word boundaries, cross no other span, and cover text
equal to one of the values the turn's actions give that slot (when they give any); anything else is an error naming
the file, the dialogue, the turn, the span and the text. A span nested inside a longer one cannot be a BIO tag of
its own: the longer one is tagged and a warning lists the nested ones (2 in the SGD training split). Nothing else is
left out.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from pathlib import Path
from typing import Any

from polytask.data.dialogue_input import DialogueInput
from polytask.data.readers import READER_INPUTS, ReaderOptions, _reader
from polytask.data.rows import Row
from polytask.errors import DataError

log = logging.getLogger("polytask")

# words: runs of letters/digits, or one other visible character ("San Jose." -> San, Jose, .); every span boundary of
# the SGD single-domain data falls on such a boundary (checked over all three splits)
WORD = re.compile(r"\w+|[^\w\s]")
DIALOGUE = '{"dialogue_id": str, "services": [str], "turns": [...]}'
TURN = '{"speaker": "USER" or "SYSTEM", "utterance": str, "frames": [one frame]}'
SPAN = '{"slot": str, "start": int, "exclusive_end": int} inside the utterance, on word boundaries'


def dialogue_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words of a user turn and their [start, end) character spans (the text itself is kept as it is)."""
    matches = list(WORD.finditer(text))
    return [m.group() for m in matches], [m.span() for m in matches]


@_reader("sgd", "encoding", "history_turns", "seen_schema", "dialogues_per_file")
def read_sgd(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """Schema-Guided Dialogue: one row per user turn with its history, intent, requested slots, BIO slot tags and
    dialogue state (see the module docstring for the columns)."""
    files, schema_file = _files(path)
    schema = _schema(schema_file, options.encoding)
    seen = None
    if options.seen_schema is not None:
        seen_file = Path(options.seen_schema)
        if not seen_file.is_absolute():
            seen_file = (schema_file.parent / seen_file).resolve()
        seen = set(_schema(seen_file, options.encoding, "the seen_schema option"))
    rows: list[Row] = []
    nested: list[str] = []
    for file in files:
        # files hold one or two services each (sorted by service): the first N dialogues of every file sample every
        # service with whole dialogues, where max_rows would keep the first services only
        for index, dialogue in enumerate(_load(file, options.encoding)[: options.dialogues_per_file]):
            rows += _dialogue_rows(str(file), index, dialogue, schema, seen, len(rows), nested)
    if nested:
        log.warning("%s: %d slot span(s) lie inside a longer span of the same turn; BIO tags cannot nest, so only "
                    "the longer span is tagged (its state values are kept): %s", path, len(nested),
                    "; ".join(nested[:3]) + (" ..." if len(nested) > 3 else ""))
    if not rows:
        raise DataError("no user turns: the dialogue files hold no dialogue with a USER turn", file=path)
    return rows


def _files(path: str) -> tuple[list[Path], Path]:
    target = Path(path)
    if not target.exists():
        raise DataError("file or folder not found", file=path)
    if target.is_dir():
        files = sorted(f for f in target.iterdir() if f.is_file() and re.fullmatch(r"dialogues_.*\.json(\.gz)?",
                                                                                     f.name))
        if not files:
            raise DataError("no dialogue files in the folder", file=path,
                            allowed="files named dialogues_*.json or dialogues_*.json.gz")
        folder = target
    else:
        files, folder = [target], target.parent
    schema = folder / "schema.json"
    if not schema.is_file():
        raise DataError("schema.json not found beside the dialogue files (it says which slots are categorical)",
                        file=str(schema))
    return files, schema


def _load(file: Path, encoding: str) -> list[Any]:
    try:
        raw = gzip.decompress(file.read_bytes()) if file.name.endswith(".gz") else file.read_bytes()
        data = json.loads(raw.decode(encoding))
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read the file: {exc}", file=str(file)) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot decode the file as {encoding}: {exc.reason}", file=str(file)) from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg} at column {exc.colno}", file=str(file), line=exc.lineno) from exc
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of dialogues, found {type(data).__name__}", file=str(file),
                        allowed=f"[{DIALOGUE}, ...]")
    return data


def _schema(file: Path, encoding: str, what: str = "schema.json") -> dict[str, dict[str, Any]]:
    """service -> {"slots": [names], "categorical": {slot: possible values}}."""
    if not file.is_file():
        raise DataError(f"file not found ({what})", file=str(file))
    try:
        data = json.loads(file.read_text(encoding=encoding))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not a readable JSON schema: {exc}", file=str(file)) from exc
    allowed = '[{"service_name": str, "slots": [{"name": str, "is_categorical": bool, "possible_values": [str]}]}]'
    out: dict[str, dict[str, Any]] = {}
    for i, service in enumerate(data if isinstance(data, list) else [None]):
        ok = (isinstance(service, dict) and isinstance(service.get("service_name"), str)
              and isinstance(service.get("slots"), list)
              and all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in service["slots"]))
        if not ok:
            raise DataError("malformed service schema", file=str(file), location=f"{file}:[{i}]", value=service,
                            allowed=allowed)
        slots = service["slots"]
        out[service["service_name"]] = {
            "slots": [s["name"] for s in slots],
            "categorical": {s["name"]: [str(v) for v in s.get("possible_values") or []]
                            for s in slots if s.get("is_categorical") is True}}
    return out


def _dialogue_rows(file: str, index: int, dialogue: Any, schema: dict[str, dict[str, Any]], seen: set[str] | None,
                   numbered: int, nested: list[str]) -> list[Row]:
    where = f"{file}:[{index}]"
    if not isinstance(dialogue, dict) or not isinstance(dialogue.get("dialogue_id"), str) \
            or not isinstance(dialogue.get("turns"), list):
        raise DataError("malformed dialogue", location=where, value=dialogue, allowed=DIALOGUE)
    did = dialogue["dialogue_id"]
    rows: list[Row] = []
    history: list[dict[str, str]] = []
    previous: dict[str, list[str]] = {}
    for t, turn in enumerate(dialogue["turns"]):
        at = f"{file}: dialogue {did} turn {t}"
        speaker, text, frame = _turn(turn, at)
        if speaker == "USER":
            service = _service(frame, schema, at)
            tags = _tags(frame, text, at, nested)
            state = _state(frame, at)
            values: dict[str, Any] = {
                "dialogue_id": did, "turn": t, "service": service, "text": text, "history": list(history),
                "intent": state["active_intent"], "requested": state["requested_slots"], "tags": tags,
                "state": state["slot_values"], "previous_state": previous,
                "service_slots": schema[service]["slots"], "categorical": schema[service]["categorical"]}
            if seen is not None:
                values["seen"] = "seen" if service in seen else "unseen"
            rows.append(Row(values, at, file, numbered + len(rows) + 1))
            previous = state["slot_values"]
        history.append({"speaker": speaker.lower(), "text": text})
    return rows


def _turn(turn: Any, at: str) -> tuple[str, str, dict[str, Any]]:
    if not isinstance(turn, dict):
        raise DataError("a turn must be a JSON object", location=at, value=turn, allowed=TURN)
    speaker, text, frames = turn.get("speaker"), turn.get("utterance"), turn.get("frames")
    if speaker not in ("USER", "SYSTEM"):
        raise DataError("missing or unknown speaker", location=at, field="speaker", value=speaker,
                        allowed="USER or SYSTEM")
    # two SYSTEM turns of the SGD test split are empty GOODBYEs: kept (the history skips empty turns)
    if not isinstance(text, str) or (speaker == "USER" and not text.strip()):
        raise DataError("missing utterance, or an empty user utterance", location=at, field="utterance",
                        value=text, allowed="a string, non-empty for a USER turn")
    if not isinstance(frames, list) or len(frames) != 1 or not isinstance(frames[0], dict):
        raise DataError("expected exactly one frame (single-domain dialogues)", location=at, field="frames",
                        value=frames, allowed="a list of one frame object")
    return speaker, text, frames[0]


def _service(frame: dict[str, Any], schema: dict[str, dict[str, Any]], at: str) -> str:
    service = frame.get("service")
    if service not in schema:
        raise DataError("the frame's service is not in schema.json", location=at, field="frames[0].service",
                        value=service, allowed=", ".join(sorted(schema)))
    return service


def _state(frame: dict[str, Any], at: str) -> dict[str, Any]:
    state = frame.get("state")
    allowed = '{"active_intent": str, "requested_slots": [str], "slot_values": {slot: [str, ...]}}'
    ok = (isinstance(state, dict) and isinstance(state.get("active_intent"), str)
          and isinstance(state.get("requested_slots"), list)
          and all(isinstance(s, str) for s in state["requested_slots"])
          and isinstance(state.get("slot_values"), dict)
          and all(isinstance(v, list) and v and all(isinstance(x, str) for x in v)
                  for v in state["slot_values"].values()))
    if not ok:
        raise DataError("missing or malformed state of a user turn", location=at, field="frames[0].state",
                        value=state, allowed=allowed)
    assert isinstance(state, dict)
    return state


def _tags(frame: dict[str, Any], text: str, at: str, nested: list[str]) -> list[str]:
    """BIO tags of the words of ``text`` from the frame's slot spans, each checked against the text; a span inside
    another is appended to ``nested``."""
    words, spans = dialogue_words(text)
    starts = {s: i for i, (s, _) in enumerate(spans)}
    ends = {e: i for i, (_, e) in enumerate(spans)}
    action_values: dict[str, list[str]] = {}
    for action in frame.get("actions") or []:
        if isinstance(action, dict) and isinstance(action.get("slot"), str):
            action_values.setdefault(action["slot"], []).extend(str(v) for v in action.get("values") or [])
    tags = ["O"] * len(words)
    placed: list[tuple[int, int, str, str, str]] = []
    slots = frame.get("slots", [])
    if not isinstance(slots, list):
        raise DataError("slots must be a list of spans", location=at, field="frames[0].slots", value=slots,
                        allowed=f"[{SPAN}, ...]")
    for k, span in enumerate(slots):
        field = f"frames[0].slots[{k}]"
        ok = (isinstance(span, dict) and isinstance(span.get("slot"), str)
              and all(isinstance(span.get(x), int) and not isinstance(span.get(x), bool)
                      for x in ("start", "exclusive_end")))
        if not ok:
            raise DataError("malformed slot span", location=at, field=field, value=span, allowed=SPAN)
        start, end = span["start"], span["exclusive_end"]

        def bad(problem: str, allowed: str = SPAN) -> DataError:
            return DataError(f"{problem}; the utterance is {text!r}", location=at, field=field, value=span,
                             allowed=allowed)

        if not 0 <= start < end <= len(text):
            raise bad(f"the span lies outside the utterance ({len(text)} characters)")
        covered = text[start:end]
        if start not in starts or end not in ends:
            raise bad(f"the span {covered!r} starts or ends inside a word")
        given = action_values.get(span["slot"])
        if given and covered not in given:
            raise bad(f"the span covers {covered!r}, not a value the turn's actions give slot {span['slot']!r}",
                      allowed=", ".join(map(repr, given)))
        placed.append((start, end, span["slot"], covered, field))
    # BIO tags cannot nest: a span inside a longer one (2 in SGD train: location "Hayward" inside theater_name
    # "Century at Hayward") keeps the outer span's tags, counted in `nested`; spans that cross are an error
    placed.sort(key=lambda p: (p[0], -p[1]))
    outer_end = -1
    for start, end, slot, covered, field in placed:
        if start < outer_end:
            if end > outer_end:
                raise DataError(f"the span {covered!r} crosses another slot span; the utterance is {text!r}",
                                location=at, field=field, value=[start, end],
                                allowed="spans that are disjoint or nested")
            nested.append(f"{at} {field} ({slot} {covered!r})")
            continue
        first, last = starts[start], ends[end]
        tags[first:last + 1] = [f"B-{slot}"] + [f"I-{slot}"] * (last - first)
        outer_end = end
    return tags


def _dialogue_input(dataset: Any) -> DialogueInput:
    """The input every task of an ``sgd`` dataset reads by default: the user turn and ``history_turns`` of history."""
    return DialogueInput(history_turns=ReaderOptions.model_validate(dataset.options).history_turns)


READER_INPUTS["sgd"] = _dialogue_input
