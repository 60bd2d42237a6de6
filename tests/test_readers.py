"""Readers: every format on small files written here, every error's text, and the real files in ../shared/data."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from polytask.data.readers import READERS, ReaderOptions, file_columns, read_rows
from polytask.data.rows import Row
from polytask.errors import DataError, PolytaskError
from polytask.registry import UnknownNameError

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

real = pytest.mark.real
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data sets not found at {SHARED_DATA}")


def write(path: Path, text: str, encoding: str = "utf-8") -> str:
    path.write_bytes(text.encode(encoding))
    return str(path)


def read(fmt: str, path: str, split: str | None = None, **options) -> list[Row]:
    return read_rows(fmt, path, ReaderOptions(**options), split=split)


def data_error(fmt: str, path: str, **options) -> str:
    with pytest.raises(DataError) as info:
        read(fmt, path, **options)
    return str(info.value)


# -- registry and options ---------------------------------------------------------------------------------------------
def test_formats_are_registered_with_a_description() -> None:
    assert READERS.names() == ["conll", "csv", "hf", "jointbert", "jsonl", "lines", "parallel", "semeval", "sgd",
                               "spert", "squad", "tsv"]
    for _, reader in READERS.items():
        assert (reader.__doc__ or "").strip()  # `polytask list` shows the first line


def test_unknown_format_lists_the_formats(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError) as info:
        read_rows("xlsx", write(tmp_path / "a.xlsx", "x"))
    assert str(info.value) == ("unknown data format 'xlsx'; available: conll, csv, hf, jointbert, jsonl, lines, "
                               "parallel, semeval, sgd, spert, squad, tsv; load a plugin with `polytask --code FILE.py|MODULE "
                               "COMMAND ...` (in Python: import its module first), or install the package that "
                               "provides it (entry point group 'polytask.plugins')")


@pytest.mark.parametrize(("options", "message"), [
    ({"encoding": "utf-9"}, "unknown encoding 'utf-9'"),
    ({"delimiter": "||"}, "must be one character"),
    ({"column_names": ["a", "b", "a"]}, "column_names repeats 'a'"),
    ({"column_names": []}, "at least one column"),
    ({"token_prefix": ""}, "must not be empty"),
    ({"quoting": "all"}, "'minimal' or 'none'"),
    ({"sheet": 1}, "Extra inputs are not permitted"),
    ({"suffixes": ["de"]}, "at least two different file suffixes"),
])
def test_bad_options_are_rejected(options: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReaderOptions(**options)


def test_option_that_does_not_apply_to_the_format_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"x": 1}\n')
    text = data_error("jsonl", path, token_prefix="en:")
    assert text == (f"{path}: field 'options': option(s) token_prefix do not apply to the jsonl format "
                    "(allowed: encoding, join, rename)")


def test_file_columns_in_order_of_first_appearance() -> None:
    rows = [Row({"b": 1, "a": 2}, "f:1", "f", 1), Row({"c": 3, "a": 4}, "f:2", "f", 2)]
    assert file_columns(rows) == ["b", "a", "c"]
    assert file_columns([]) == []


# -- errors shared by every file format -------------------------------------------------------------------------------
FILE_FORMATS = ["csv", "tsv", "jsonl", "conll", "lines", "jointbert"]


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_missing_file(tmp_path: Path, fmt: str) -> None:
    path = str(tmp_path / "nope.txt")
    assert data_error(fmt, path).startswith(f"{path}: file not found")


@pytest.mark.parametrize(("fmt", "content"), [
    ("csv", ""), ("csv", "a,b\n"), ("tsv", "\ufeffa\tb\n\n"), ("jsonl", "\n  \n"), ("conll", "\n-DOCSTART- O\n\n"),
    ("lines", ""),
])
def test_empty_file_has_no_rows(tmp_path: Path, fmt: str, content: str) -> None:
    path = write(tmp_path / "empty.txt", content)
    assert data_error(fmt, path).startswith(f"{path}: no rows")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "conll", "lines"])
def test_a_folder_is_not_a_file(tmp_path: Path, fmt: str) -> None:
    assert data_error(fmt, str(tmp_path)) == f"{tmp_path}: is a folder, expected a file"


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "conll", "lines"])
def test_bad_encoding_names_line_and_byte_offset_and_suggests_the_option(tmp_path: Path, fmt: str) -> None:
    lines = {"csv": ["label,text", "a,ok", "b,caf\u00e9"], "jsonl": ['{"t": "ok"}', '{"t": "caf\u00e9"}'],
             "conll": ["ok O", "", "caf\u00e9 O"], "lines": ["A ok", "B caf\u00e9"]}[fmt]
    path = write(tmp_path / "latin1.txt", "\n".join(lines) + "\n", encoding="latin-1")
    offset = len("\n".join(lines[:-1]).encode("latin-1")) + 1 + lines[-1].index("\u00e9")
    text = data_error(fmt, path)
    assert text.startswith(f"{path}:{len(lines)}: cannot decode byte(s) 0xe9 at byte offset {offset} "
                           f"(byte {lines[-1].index('é') + 1} of the line) as utf-8")
    assert "`options: {encoding: latin-1}`" in text
    assert [r.line for r in read(fmt, path, encoding="latin-1")][-1] == len(lines)


# -- csv / tsv --------------------------------------------------------------------------------------------------------
def test_csv_values_are_strings_and_rows_know_their_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'text,label\nhello,1\n"two\nlines, quoted",0\n\nlast,"1"\n')
    rows = read("csv", path)
    assert [r.values for r in rows] == [{"text": "hello", "label": "1"}, {"text": "two\nlines, quoted", "label": "0"},
                                        {"text": "last", "label": "1"}]
    assert [r.line for r in rows] == [2, 3, 6]  # the quoted newline and the blank line are counted
    assert rows[2].location == f"{path}:6" and rows[2].file == path


def test_csv_bom_and_crlf_are_handled(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "\ufeffa,b\r\n1,2\r\n3,4\r\n")
    rows = read("csv", path)
    assert [r.values for r in rows] == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]
    assert [r.line for r in rows] == [2, 3]


def test_csv_other_delimiter_and_no_quoting(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'a;b\nsaid "hi;1\n')
    assert read("csv", path, delimiter=";", quoting="none")[0].values == {"a": 'said "hi', "b": "1"}


def test_csv_wrong_field_count(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\nok,1\ntoo,many,fields\n")
    assert data_error("csv", path) == f"{path}:3: expected 2 fields separated by ',' (text, label), found 3"


def test_csv_wrong_field_count_after_an_open_quote_suggests_quoting_none(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'text,label\n"unclosed,1\nnext,0\n')
    text = data_error("csv", path)
    assert text.startswith(f"{path}:2: expected 2 fields separated by ',' (text, label), found 1; a quote character "
                           "opened a field that swallowed a delimiter or line end (lines 2-3)")
    assert text.endswith("set `options: {quoting: none}`")
    assert [r.values["text"] for r in read("csv", path, quoting="none")] == ['"unclosed', "next"]


def test_csv_without_header(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "hello,1\nbye,0\n")
    rows = read("csv", path, header=False, column_names=["text", "label"])
    assert rows[0].values == {"text": "hello", "label": "1"} and rows[0].line == 1
    assert data_error("csv", path, header=False) == (
        f"{path}: field 'options.column_names': a file without a header needs `column_names` in its options")


def test_csv_column_names_replace_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "#1 String,#2 String\na,b\n")
    assert read("csv", path, column_names=["s1", "s2"])[0].values == {"s1": "a", "s2": "b"}
    text = data_error("csv", path, column_names=["s1"])
    assert text == (f"{path}:1: field 'options.column_names': value ['s1']: options.column_names gives 1 names but "
                    "the header has 2 columns")


def test_csv_duplicate_header_name(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label,text\na,b,c\n")
    assert data_error("csv", path) == (f"{path}:1: field 'text': the header names this column more than once "
                                       "(set `column_names` to rename)")


def test_csv_parser_error_names_the_line(tmp_path: Path) -> None:
    import csv

    limit = csv.field_size_limit()
    path = write(tmp_path / "d.csv", "a,b\n1,2\n3," + "x" * (limit + 1) + "\n")
    assert data_error("csv", path) == f"{path}:3: cannot parse the row: field larger than field limit ({limit})"


def test_tsv_keeps_bare_quotes_by_default(tmp_path: Path) -> None:
    # GLUE TSVs hold unbalanced quotes as plain text, e.g. STS-B: "Oh, you're such a good person!<TAB>You're...!"
    path = write(tmp_path / "d.tsv", 's1\ts2\tscore\n"Oh, good!\tbad!"\t1.8\nx\ty\t2\n')
    rows = read("tsv", path)
    assert rows[0].values == {"s1": '"Oh, good!', "s2": 'bad!"', "score": "1.8"}
    assert [r.line for r in rows] == [2, 3]
    text = data_error("tsv", path, quoting="minimal")
    assert text.startswith(f"{path}:2: expected 3 fields separated by '\\t' (s1, s2, score), found 2; a quote")


# -- jsonl ------------------------------------------------------------------------------------------------------------
def test_jsonl_keeps_json_types(tmp_path: Path) -> None:
    lines = [{"text": "a", "score": 1.5, "ok": True, "tags": ["O", "B-X"], "n": None}, {"text": "b\u2028c", "score": 2}]
    path = write(tmp_path / "d.jsonl", json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1], ensure_ascii=False) + "\n")
    rows = read("jsonl", path)
    assert [r.values for r in rows] == lines
    assert [r.location for r in rows] == [f"{path}:1", f"{path}:3"]  # U+2028 in a string does not shift lines


def test_jsonl_invalid_json(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"a": 1}\n{"a": 2,}\n')
    assert data_error("jsonl", path) == (f"{path}:2: invalid JSON: Expecting property name enclosed in double quotes "
                                         "at column 9")


def test_jsonl_line_must_be_an_object(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"a": 1}\n["a", 1]\n')
    assert data_error("jsonl", path) == (f"{path}:2: value ['a', 1]: expected a JSON object ({{...}}) per line, "
                                         "found an array")


# -- conll ------------------------------------------------------------------------------------------------------------
def test_conll_sentences_tokens_and_tags(tmp_path: Path) -> None:
    text = ("-DOCSTART- -X- O O\n\nEU\tB-ORG\nrejects\tO\n\t\n\n\nPeter\tB-PER\n"
            "Blackburn\tI-PER\n\n-DOCSTART-\nDubbz\ufeff\tB-person\n\ufeff\nlast O")
    path = write(tmp_path / "d.conll", text)
    rows = read("conll", path)
    assert [r.values for r in rows] == [
        {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]},
        {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]},  # a tab-only line was a sentence break
        {"tokens": ["Dubbz"], "tags": ["B-person"]},  # U+FEFF stripped, and a line holding only U+FEFF is blank
        {"tokens": ["last"], "tags": ["O"]},  # no final newline; space-separated like the tab lines' 2 columns
    ]
    assert [r.location for r in rows] == [f"{path}:3", f"{path}:8", f"{path}:12", f"{path}:14"]
    path = write(tmp_path / "conll2003.conll", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n")
    assert read("conll", path)[0].values == {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}  # first + last


def test_conll_token_with_a_space_is_an_error_not_a_lost_word(tmp_path: Path) -> None:
    # white-space separated: "York" would have been dropped as a middle column
    path = write(tmp_path / "d.conll", "in O\nNew York B-city\n")
    assert data_error("conll", path) == (
        f"{path}:2: value 'New York B-city': 3 columns, but the file's first word line (1) has 2: a token holding "
        "white space would lose words here; write one word per line, or set options.column_names when lines "
        "really have more columns (allowed: 2 columns)")
    # tab-separated: the token itself would hold the space, which no word can
    path = write(tmp_path / "t.conll", "in\tO\nNew York\tB-city\n")
    assert data_error("conll", path) == (
        f"{path}:2: value 'New York': a tab-separated column holds white space; a word cannot (one word per line) "
        "(allowed: columns without spaces, separated by tabs)")
    # column_names says the lines have three columns: then the same line is token, pos, tag
    rows = read("conll", write(tmp_path / "p.conll", "in IN O\nNew NNP B-city\n"), column_names=["w", "pos", "t"])
    assert rows[0].values["w"] == ["in", "New"]


def test_conll_token_prefix(tmp_path: Path) -> None:
    path = write(tmp_path / "d.conll", "en:R.H.\tB-ORG\nen:en:x\tO\n\nen:(\tO\nParis\tB-LOC\n")
    with pytest.raises(DataError) as info:
        read("conll", path, token_prefix="en:")
    assert str(info.value) == (f"{path}:5: field 'tokens': value 'Paris': the token lacks the prefix 'en:' set in "
                               "options.token_prefix")
    path = write(tmp_path / "ok.conll", "en:R.H.\tB-ORG\nen:en:x\tO\n")
    assert read("conll", path, token_prefix="en:")[0].values["tokens"] == ["R.H.", "en:x"]  # stripped once only


def test_conll_single_column(tmp_path: Path) -> None:
    path = write(tmp_path / "d.conll", "a O\nlonely\n")
    assert data_error("conll", path) == (f"{path}:2: value 'lonely': expected a token and a tag separated by a tab or "
                                         "spaces, found one column")


def test_conll_column_names(tmp_path: Path) -> None:
    path = write(tmp_path / "d.conll", "EU NNP B-ORG\nrejects VBZ O\n")
    rows = read("conll", path, column_names=["words", "pos", "ner"])
    assert rows[0].values == {"words": ["EU", "rejects"], "pos": ["NNP", "VBZ"], "ner": ["B-ORG", "O"]}
    assert data_error("conll", path, column_names=["words", "ner"]) == (
        f"{path}:1: value 'EU NNP B-ORG': expected 2 columns (words, ner), found 3")


# -- jointbert --------------------------------------------------------------------------------------------------------
def jointbert_folder(tmp_path: Path, seq_in: str, seq_out: str, label: str) -> str:
    folder = tmp_path / "train"
    folder.mkdir()
    for name, text in (("seq.in", seq_in), ("seq.out", seq_out), ("label", label)):
        write(folder / name, text)
    return str(folder)


def test_jointbert_rows(tmp_path: Path) -> None:
    folder = jointbert_folder(tmp_path, "play some jazz \nweather in paris\n", "O O B-genre \nO O B-city \n",
                              "PlayMusic\nGetWeather\n")
    rows = read("jointbert", folder)
    assert rows[1].values == {"tokens": ["weather", "in", "paris"], "tags": ["O", "O", "B-city"],
                              "intent": "GetWeather", "text": "weather in paris"}
    assert [r.location for r in rows] == [f"{folder}:1", f"{folder}:2"]
    assert rows[0].file == folder


def test_jointbert_word_and_tag_counts_differ(tmp_path: Path) -> None:
    folder = jointbert_folder(tmp_path, "a b\nc d e\n", "O O\nO O\n", "X\nY\n")
    assert data_error("jointbert", folder) == (f"{folder}/seq.out:2: value 'O O': 3 words in seq.in but 2 tags in "
                                               "seq.out")


def test_jointbert_line_counts_differ(tmp_path: Path) -> None:
    folder = jointbert_folder(tmp_path, "a b\nc d\n", "O O\nO O\n", "X\n")
    assert data_error("jointbert", folder) == (f"{folder}/label:2: label has 1 lines but seq.in has 2: the files "
                                               "must be line-aligned (line 2 has no counterpart)")


def test_jointbert_missing_file_and_not_a_folder(tmp_path: Path) -> None:
    folder = jointbert_folder(tmp_path, "a\n", "O\n", "X\n")
    (Path(folder) / "seq.out").unlink()
    assert data_error("jointbert", folder).startswith(f"{folder}/seq.out: file not found (the jointbert format needs")
    assert data_error("jointbert", f"{folder}/seq.in") == (
        f"{folder}/seq.in: expected a folder holding seq.in, seq.out and label, found a file")


def test_jointbert_empty_utterance_and_missing_intent(tmp_path: Path) -> None:
    folder = jointbert_folder(tmp_path, "a\n \n", "O\nO\n", "X\nY\n")
    assert data_error("jointbert", folder) == f"{folder}/seq.in:2: empty utterance"
    other = tmp_path / "other"
    other.mkdir()
    folder = jointbert_folder(other, "a\nb\n", "O\nO\n", "X\n\n")
    assert data_error("jointbert", folder) == f"{folder}/label:2: missing intent label"


# -- lines ------------------------------------------------------------------------------------------------------------
def test_lines_label_text_and_coarse_label(tmp_path: Path) -> None:
    path = write(tmp_path / "d.label", "NUM:dist How far is it ?\n\npositive  a  good  film \n")
    rows = read("lines", path)
    assert rows[0].values == {"label": "NUM:dist", "text": "How far is it ?", "coarse_label": "NUM"}
    assert rows[1].values == {"label": "positive", "text": "a  good  film"}  # no ":" -> no coarse label
    assert [r.line for r in rows] == [1, 3]


def test_lines_label_without_text(tmp_path: Path) -> None:
    path = write(tmp_path / "d.label", "NUM:dist How far ?\nDESC:def\n")
    assert data_error("lines", path) == (f"{path}:2: field 'label': value 'DESC:def': expected 'LABEL text...', found "
                                         "a label without text")


# -- hf ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def hf_folder(tmp_path: Path) -> Path:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner": datasets.Sequence(datasets.ClassLabel(names=["O", "B-LOC"])),
        "label": datasets.ClassLabel(names=["neg", "pos"]),
        "score": datasets.Value("float32"),
    })
    train = datasets.Dataset.from_dict(
        {"tokens": [["in", "paris"], ["ok"]], "ner": [[0, 1], [0]], "label": [1, -1], "score": [0.5, 2.0]},
        features=features)
    datasets.DatasetDict({"train": train, "test": train.select([0])}).save_to_disk(str(tmp_path / "dict"))
    train.save_to_disk(str(tmp_path / "single"))
    return tmp_path


def test_hf_saved_dataset_dict(hf_folder: Path) -> None:
    path = str(hf_folder / "dict")
    rows = read("hf", path, split="train")
    # class labels become their names; -1 (unlabelled) becomes None
    assert [r.values for r in rows] == [
        {"tokens": ["in", "paris"], "ner": ["O", "B-LOC"], "label": "pos", "score": 0.5},
        {"tokens": ["ok"], "ner": ["O"], "label": None, "score": 2.0},
    ]
    assert rows[1].location == f"hf:{path}[train] row 2"
    assert (rows[1].file, rows[1].line) == (f"hf:{path}[train]", 2)
    assert len(read("hf", path, split="test")) == 1


def test_hf_saved_single_dataset_is_the_split(hf_folder: Path) -> None:
    assert len(read("hf", str(hf_folder / "single"), split="validation")) == 2


def test_hf_errors(hf_folder: Path) -> None:
    path = str(hf_folder / "dict")
    with pytest.raises(DataError, match=r"needs a split name"):
        read("hf", path)
    with pytest.raises(DataError) as info:
        read("hf", path, split="validation")
    assert str(info.value) == (f"hf:{path}[validation]: field 'split': value 'validation': split not found in the "
                               "saved dataset (allowed: train, test)")
    with pytest.raises(DataError, match="hf_config applies to hub datasets only"):
        read("hf", path, split="train", hf_config="en")
    with pytest.raises(DataError, match="file not found"):
        read("hf", str(hf_folder / "missing"), split="train")


def test_hf_hub_failure_offline_names_the_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # read at import time: the env var alone is late
    start = time.monotonic()
    with pytest.raises(PolytaskError) as info:
        read("hf", "polytask-made-up/no-such-dataset", split="train", hf_config="en")
    text = str(info.value)
    assert text.startswith("hf:polytask-made-up/no-such-dataset[train]: could not load the Hugging Face dataset "
                           "'polytask-made-up/no-such-dataset' (config 'en'):")
    assert "HF_DATASETS_OFFLINE" in text
    assert time.monotonic() - start < 30


def test_hf_without_datasets_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(PolytaskError, match=r"pip install 'polytask\[hf\]'"):
        read("hf", "glue", split="train")


# -- the real data sets -----------------------------------------------------------------------------------------------
@real
@needs_shared
@pytest.mark.parametrize(("path", "count", "columns"), [
    ("glue_sst-2/train.tsv", 67349, ["sentence", "label"]),
    ("glue_sst-2/dev.tsv", 872, ["sentence", "label"]),
    ("glue_sst-2/test-labeled.tsv", 1821, ["sentence", "label"]),  # CRLF line ends
    ("glue_mrpc/train.tsv", 3667, ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]),  # starts with a BOM
    ("glue_mrpc/dev.tsv", 408, ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]),
    ("glue_sts-b/train.tsv", 5749, ["index", "genre", "filename", "year", "old_index", "source1", "source2",
                                    "sentence1", "sentence2", "score"]),
    ("glue_sts-b/dev.tsv", 1500, ["index", "genre", "filename", "year", "old_index", "source1", "source2",
                                  "sentence1", "sentence2", "score"]),
    ("glue_rte/train.tsv", 2490, ["index", "sentence1", "sentence2", "label"]),
    ("glue_rte/dev.tsv", 277, ["index", "sentence1", "sentence2", "label"]),
])
def test_real_glue_tsv(path: str, count: int, columns: list[str]) -> None:
    rows = read("tsv", str(SHARED_DATA / path))
    assert len(rows) == count
    assert file_columns(rows) == columns
    assert [r.line for r in rows] == list(range(2, count + 2))  # one physical line per row: nothing merged
    assert not any("\r" in v for r in rows for v in r.values.values())


@real
@needs_shared
def test_real_sst2_train_is_fast() -> None:
    start = time.perf_counter()
    read("tsv", str(SHARED_DATA / "glue_sst-2/train.tsv"))
    assert time.perf_counter() - start < 2.0


@real
@needs_shared
def test_real_stsb_scores_and_bare_quotes() -> None:
    path = str(SHARED_DATA / "glue_sts-b/train.tsv")
    rows = read("tsv", path)
    assert all(0.0 <= float(r.values["score"]) <= 5.0 for r in rows)  # every row has its score in the last field
    assert rows[2103].values["sentence1"] == '"Oh, you\'re such a good person!'  # line 2105: a bare quote
    with pytest.raises(DataError, match=r"train.tsv:2105: expected 10 fields .* found 9; a quote character"):
        read("tsv", path, quoting="minimal")


@real
@needs_shared
@pytest.mark.parametrize(("path", "count", "options"), [
    ("wnut17/wnut17train.conll", 3394, {}),
    ("wnut17/emerging.dev.conll", 1009, {}),
    ("wnut17/emerging.test.annotated", 1287, {}),
    ("wikiann_en/train", 20000, {"token_prefix": "en:"}),
    ("wikiann_en/dev", 10000, {"token_prefix": "en:"}),
    ("wikiann_en/test", 10000, {"token_prefix": "en:"}),
])
def test_real_conll(path: str, count: int, options: dict) -> None:
    rows = read("conll", str(SHARED_DATA / path), **options)
    assert len(rows) == count
    for row in rows:
        tokens, tags = row.values["tokens"], row.values["tags"]
        assert len(tokens) == len(tags) and all(tokens)
        assert all(t == "O" or t[:2] in ("B-", "I-") for t in tags)
        assert not any("\ufeff" in t or t.startswith("en:") for t in tokens)


@real
@needs_shared
def test_real_wnut17_dev_stray_bom() -> None:
    rows = read("conll", str(SHARED_DATA / "wnut17/emerging.dev.conll"))
    dubbz = next(r for r in rows if "Dubbz" in r.values["tokens"])
    assert dubbz.line == 16728 and dubbz.values["tags"][-1] == "B-person"


@real
@needs_shared
@pytest.mark.parametrize(("split", "count"), [("train", 13084), ("dev", 700), ("test", 700)])
def test_real_snips(split: str, count: int) -> None:
    rows = read("jointbert", str(SHARED_DATA / "snips" / split))
    assert len(rows) == count
    intents = {r.values["intent"] for r in rows}
    assert intents == {"AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook",
                       "SearchCreativeWork", "SearchScreeningEvent"}
    assert all(len(r.values["tokens"]) == len(r.values["tags"]) for r in rows)


@real
@needs_shared
def test_real_trec() -> None:
    train = str(SHARED_DATA / "trec/train_5500.label")
    text = data_error("lines", train)
    assert text.startswith(f"{train}:66: cannot decode byte(s) 0xf0 at byte offset 3665")
    assert "`options: {encoding: latin-1}`" in text
    rows = read("lines", train, encoding="latin-1")
    assert len(rows) == 5452
    assert {r.values["coarse_label"] for r in rows} == {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}
    assert len(read("lines", str(SHARED_DATA / "trec/TREC_10.label"))) == 500
