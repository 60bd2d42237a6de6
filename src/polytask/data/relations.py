"""Readers of relation data: ``semeval`` (SemEval-2010 Task 8 marked sentences) and ``spert`` (SpERT JSON with
entity spans or BILOU/BIO tags, as in CoNLL04).

SemEval-2010 Task 8 (Hendrickx et al. 2010) blocks are four lines: ``ID<TAB>"sentence with <e1>..</e1> and
<e2>..</e2>"``, the label (``Name(e1,e2)``, ``Name(e2,e1)`` or ``Other``), ``Comment: ...`` and a blank line. The
markers are removed and the entities become character offsets into the clean text, so a model never sees markup it
was not told about. SpERT (Eberts & Ulges 2020) sentences hold ``tokens``, ``entities`` (token spans, end exclusive)
and ``relations`` (indices into the entities); the TablERT variant of CoNLL04 gives per-token ``tags`` instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from polytask.data.readers import ReaderOptions, _existing_file, _numbered_lines, _read_text, _reader, _require_rows
from polytask.data.rows import Row
from polytask.errors import DataError

# -- semeval ----------------------------------------------------------------------------------------------------------
_SENTENCE = re.compile(r'^([^\s"]+)\t"(.*)"\s*$')
_LABEL = re.compile(r"^[^\s()]+\((e1,e2|e2,e1)\)$")
_MARKER = re.compile(r"<(/?)(e[12])>")
SEMEVAL_SENTENCE = 'ID<TAB>"sentence with <e1>..</e1> and <e2>..</e2>"'
SEMEVAL_LABELS = "Other, Name(e1,e2) or Name(e2,e1)"
SEMEVAL_MARKERS = "exactly one <e1>...</e1> and one <e2>...</e2>, neither inside the other, each around some text"


@_reader("semeval", "encoding")
def read_semeval(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """SemEval-2010 Task 8 relation classification: id, text (markers removed), e1/e2 character spans, relation."""
    file = _existing_file(path)
    rows = [_semeval_row(path, block) for block in _blocks(_numbered_lines(_read_text(file, options.encoding)))]
    return _require_rows(rows, path)


def _blocks(lines: list[tuple[int, str]]) -> list[list[tuple[int, str]]]:
    """Groups of non-blank lines; any run of blank lines (one between blocks, maybe more at the end) separates."""
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for number, line in lines:
        if line.strip():
            current.append((number, line))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _semeval_row(path: str, block: list[tuple[int, str]]) -> Row:
    (first, sentence_line), rest = block[0], block[1:]
    match = _SENTENCE.match(sentence_line)
    if match is None:
        raise DataError("expected a sentence line", file=path, line=first, field="text", value=sentence_line,
                        allowed=SEMEVAL_SENTENCE)
    if len(rest) == 1 and rest[0][1].startswith("Comment:"):
        raise DataError("missing label line between the sentence and the Comment: line", file=path,
                        line=rest[0][0], field="relation", value=rest[0][1], allowed=SEMEVAL_LABELS)
    if len(rest) != 2:
        where, found = (rest[2] if len(rest) > 2 else block[-1])
        lines = f"{len(block)} line{'s' * (len(block) != 1)}"
        raise DataError(f"the block starting at line {first} has {lines}; expected 3 (sentence, label, Comment:) "
                        "followed by a blank line", file=path, line=where, value=found)
    (label_number, label), (comment_number, comment) = rest
    label = label.strip()
    if label != "Other" and not _LABEL.match(label):
        raise DataError("malformed relation label", file=path, line=label_number, field="relation", value=label,
                        allowed=SEMEVAL_LABELS)
    if not comment.startswith("Comment:"):
        raise DataError("expected the Comment: line", file=path, line=comment_number, field="comment",
                        value=comment, allowed="'Comment:' followed by optional text")
    text, spans = _strip_markers(path, first, match.group(2))
    values = {"id": match.group(1), "text": text, "e1": spans["e1"], "e2": spans["e2"], "relation": label,
              "comment": comment[len("Comment:"):].strip()}
    return Row(values, f"{path}:{first}", path, first)


def _strip_markers(path: str, line: int, marked: str) -> tuple[str, dict[str, list[int]]]:
    """The sentence without <e1>/<e2> markers and each entity's [start, end) in it, checking the markers nest right."""

    def bad(problem: str) -> DataError:
        return DataError(problem, file=path, line=line, field="text", value=marked, allowed=SEMEVAL_MARKERS)

    pieces: list[str] = []
    length, last = 0, 0
    starts: dict[str, tuple[int, int]] = {}  # name -> (offset in the clean text, offset in the marked sentence)
    spans: dict[str, list[int]] = {}
    open_name: str | None = None
    for found in _MARKER.finditer(marked):
        pieces.append(marked[last:found.start()])
        length += found.start() - last
        last = found.end()
        closing, name = found.group(1) == "/", found.group(2)
        if not closing:
            if name in starts:
                raise bad(f"<{name}> appears more than once")
            if open_name is not None:
                raise bad(f"<{name}> opens inside <{open_name}> (nested entities)")
            starts[name], open_name = (length, found.end()), name
        elif name in spans:
            raise bad(f"</{name}> appears more than once")
        elif name not in starts:
            where = "comes before" if f"<{name}>" in marked else "appears without"
            raise bad(f"</{name}> {where} <{name}>")
        else:  # name is the open entity: nothing can open inside it, so it is the only one open
            if not marked[starts[name][1]:found.start()].strip():
                raise bad(f"empty entity <{name}></{name}>")
            spans[name], open_name = [starts[name][0], length], None
    if open_name is not None:
        raise bad(f"<{open_name}> is never closed")
    for name in ("e1", "e2"):
        if name not in starts:
            raise bad(f"the <{name}>...</{name}> markers are missing")
    pieces.append(marked[last:])
    return "".join(pieces), spans


# -- spert ------------------------------------------------------------------------------------------------------------
BILOU = "B-TYPE, I-TYPE, L-TYPE, U-TYPE or O"
BIO = "B-TYPE, I-TYPE or O"


@_reader("spert", "encoding")
def read_spert(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """SpERT JSON (e.g. CoNLL04): tokens, entities (token spans, from BILOU/BIO tags if given) and relations."""
    file = _existing_file(path)
    try:
        data = json.loads(_read_text(file, options.encoding))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg} at column {exc.colno}", file=path, line=exc.lineno) from exc
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of sentences, found {type(data).__name__}", file=path,
                        allowed='[{"tokens": [...], "entities" or "tags": [...], "relations": [...]}, ...]')
    # One scheme per file: a BIO file has no L-/U- tags, and reading a BILOU file as BIO would split entities.
    bilou = any(isinstance(s, dict) and isinstance(s.get("tags"), list)
                and any(isinstance(t, str) and t[:2] in ("L-", "U-") for t in s["tags"]) for s in data)
    rows = [_spert_row(path, i, sentence, bilou) for i, sentence in enumerate(data)]
    return _require_rows(rows, path)


def _spert_row(path: str, index: int, sentence: Any, bilou: bool) -> Row:
    where = f"{path}:[{index}]"

    def bad(problem: str, field: str | None = None, value: Any = ..., allowed: str | None = None) -> DataError:
        return DataError(problem, location=where, file=path, field=field, value=value, allowed=allowed)

    if not isinstance(sentence, dict):
        raise bad(f"expected a sentence object, found {type(sentence).__name__}", value=sentence)
    tokens = sentence.get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise bad("a sentence needs a non-empty list of string tokens", "tokens", tokens, "a list of strings")
    if ("entities" in sentence) == ("tags" in sentence):
        raise bad("a sentence needs exactly one of 'entities' and 'tags'", value=sorted(sentence),
                  allowed="entities ([{type, start, end}]) or tags (one BILOU/BIO tag per token)")
    if "tags" in sentence:
        entities = _entities_from_tags(sentence["tags"], len(tokens), bilou, bad)
    else:
        entities = _checked_entities(sentence["entities"], len(tokens), bad)
    order = sorted(range(len(entities)), key=lambda i: (entities[i]["start"], entities[i]["end"]))
    new_index = {old: new for new, old in enumerate(order)}
    ordered = [entities[i] for i in order]
    for left, right in zip(ordered, ordered[1:]):
        if right["start"] < left["end"]:
            raise bad("entities overlap", "entities", [left, right], "entities that share no token")
    relations = _checked_relations(sentence.get("relations", []), len(entities), bad)
    values: dict[str, Any] = {"tokens": tokens, "entities": ordered, "relations": [
        {"type": r["type"], "head": new_index[r["head"]], "tail": new_index[r["tail"]]} for r in relations]}
    values.update((k, v) for k, v in sentence.items() if k not in ("tokens", "tags", "entities", "relations"))
    return Row(values, where, path, index + 1)


def _entities_from_tags(tags: Any, length: int, bilou: bool, bad: Callable[..., DataError]) -> list[dict[str, Any]]:
    """Entities in order of appearance; every malformed sequence is an error rather than a guess."""
    scheme = BILOU if bilou else BIO
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise bad("tags must be a list of strings", "tags", tags, scheme)
    if len(tags) != length:
        raise bad(f"{len(tags)} tags for {length} tokens", "tags", tags, "one tag per token")
    entities: list[dict[str, Any]] = []
    open_type, open_start = None, 0
    for i, tag in enumerate(tags + ["O"]):  # a final O closes a BIO entity running to the end
        prefix, kind = (tag[:1], tag[2:]) if len(tag) > 2 and tag[1] == "-" else (tag, "")
        if tag != "O" and (prefix not in ("B", "I", "L", "U") or not kind or (not bilou and prefix in "LU")):
            raise bad("unknown tag", f"tags[{i}]", tag, scheme)
        continues = prefix in ("I", "L") and open_type == kind
        if prefix in ("I", "L") and not continues:
            raise bad(f"{tag} without a preceding B-{kind}", f"tags[{i}]", tag, f"{scheme}, in a valid sequence")
        if open_type is not None and not continues:
            if bilou:  # in BILOU an entity must end with L-, so a B- cut short is a broken file, not a span
                found = f"found {tag!r} at token {i}" if i < length else "the sentence ends"
                raise bad(f"B-{open_type} is not closed by L-{open_type} ({found})", f"tags[{open_start}]",
                          tags[open_start], scheme)
            entities.append({"type": open_type, "start": open_start, "end": i})
            open_type = None
        if prefix == "B":
            open_type, open_start = kind, i
        elif prefix == "U":
            entities.append({"type": kind, "start": i, "end": i + 1})
        elif prefix == "L":
            entities.append({"type": kind, "start": open_start, "end": i + 1})
            open_type = None
    return entities


def _checked_entities(raw: Any, length: int, bad: Callable[..., DataError]) -> list[dict[str, Any]]:
    allowed = f'{{"type": str, "start": int, "end": int}} with 0 <= start < end <= {length} (the token count)'
    if not isinstance(raw, list):
        raise bad("entities must be a list", "entities", raw, allowed)
    entities = []
    for i, entity in enumerate(raw):
        if not (isinstance(entity, dict) and isinstance(entity.get("type"), str)
                and all(_is_int(entity.get(k)) for k in ("start", "end"))):
            raise bad("malformed entity", f"entities[{i}]", entity, allowed)
        if not 0 <= entity["start"] < entity["end"] <= length:
            raise bad("entity span outside the sentence or empty", f"entities[{i}]", entity, allowed)
        entities.append({"type": entity["type"], "start": entity["start"], "end": entity["end"]})
    return entities


def _checked_relations(raw: Any, count: int, bad: Callable[..., DataError]) -> list[dict[str, Any]]:
    allowed = f'{{"type": str, "head": int, "tail": int}}, head != tail, indices 0..{count - 1} of the entities'
    if not isinstance(raw, list):
        raise bad("relations must be a list", "relations", raw, allowed)
    for i, relation in enumerate(raw):
        if not (isinstance(relation, dict) and isinstance(relation.get("type"), str)
                and all(_is_int(relation.get(k)) for k in ("head", "tail"))):
            raise bad("malformed relation", f"relations[{i}]", relation, allowed)
        for end in ("head", "tail"):
            if not 0 <= relation[end] < count:
                raise bad(f"{end} {relation[end]} is not an index of the sentence's {count} entities",
                          f"relations[{i}].{end}", relation, allowed)
        if relation["head"] == relation["tail"]:
            raise bad("a relation's head and tail are the same entity", f"relations[{i}]", relation, allowed)
    return raw


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
