"""The page `polytask serve` shows at `/`, in a real headless Chromium (Debian's chromium + chromium-driver, driven by
selenium): it lists the model's tasks, label sets and stored metrics, and for what a person types it draws exactly
what `POST /predict` answers: labels with score bars, spans highlighted in the text, regression values, QA answers
in the context, relations between highlighted entities, "none" answers, the server's errors, generated text with
the generation settings sent, dialogue turns whose state is carried to the next turn; user text never becomes
markup. The browser tests skip, saying what is missing, only when chromium, chromedriver or selenium are
absent (`make test` installs chromium as root)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from polytask.inference import Pipeline
from polytask.serve.app import create_app
from polytask.serve.page import read_metrics

TEXTS = ["what is the weather in paris today", "play music by adele queen now",
         "\U0001f600 play music by drake sting now"]  # an emoji: offsets count code points, JavaScript UTF-16 units


# ----------------------------------------------------------------------------------------------------------------------
# without a browser: the files, the headers, GET /info


def test_page_files_and_info(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from polytask.cli import app as cli

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(app=app))
    best = trained[1].best_dir
    assert CliRunner().invoke(cli, ["serve", str(best), "--max-chars", "99"]).exit_code == 0
    with TestClient(seen["app"]) as c:
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert 'src="static/page.js"' in page.text and "<script>" not in page.text  # no inline script
        for name, kind in (("page.js", "javascript"), ("page.css", "text/css"), ("favicon.svg", "image/svg")):
            r = c.get(f"/static/{name}")
            assert r.status_code == 200 and kind in r.headers["content-type"], name
        assert c.get("/static/nope.js").status_code == 404
        info = c.get("/info").json()
        tasks = c.get("/tasks").json()
        assert {n: {k: t[k] for k in tasks[n]} for n, t in info["tasks"].items()} == tasks
        assert info["tasks"]["intent"]["primary_metric"] == "accuracy"
        assert info["tasks"]["topics"]["params"]["threshold"] == 0.5
        assert info["metrics"] == json.loads((best / "metrics.json").read_text())  # what serve() read from CKPT
        assert info["limits"] == {"max_batch": 64, "max_chars": 99, "max_beams": 4, "max_new_tokens": 256}
        assert not any(t["generates"] for t in info["tasks"].values())
        assert info["encoder"]["model_type"] == "bert" and info["encoder"]["layers"] == 2
        paths = c.get("/openapi.json").json()["paths"]
        assert "/info" in paths and "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_read_metrics(tmp_path: Path) -> None:
    assert read_metrics(tmp_path) is None  # a checkpoint saved without metrics
    (tmp_path / "metrics.json").write_text('{"validation": {"tasks": {"s": {"pearson": NaN, "mse": 0.5}}}}')
    assert read_metrics(tmp_path) == {"validation": {"tasks": {"s": {"pearson": None, "mse": 0.5}}}}
    (tmp_path / "metrics.json").write_text("{cut")
    assert read_metrics(tmp_path) is None


# ----------------------------------------------------------------------------------------------------------------------
# in Chromium


@pytest.fixture(scope="session")  # session: set up before the session-scoped models, so a skip trains nothing
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install 'polytask[test]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(f"{'chromium' if not chromium else 'chromedriver'} is not on PATH (Debian: apt-get install "
                    "chromium chromium-driver; `make test` installs them when run as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


@contextmanager
def served(app: Any) -> Iterator[str]:
    """A real uvicorn server on a free port of 127.0.0.1, in a thread -> its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


class Page:
    """The page in the browser, and the server's own answer to compare it with."""

    def __init__(self, driver: Any, base: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.d, self.base, self.by, self.wait = driver, base, By, WebDriverWait(driver, 30)
        self.load()

    def load(self) -> None:
        self.d.get(self.base + "/")
        self.wait.until(lambda d: self.body.get_attribute("data-ready") == "true")

    @property
    def body(self) -> Any:
        return self.d.find_element(self.by.TAG_NAME, "body")

    def find(self, css: str, within: Any = None) -> list[Any]:
        return (within or self.d).find_elements(self.by.CSS_SELECTOR, css)

    def type(self, css: str, value: str) -> None:
        element = self.find(css)[0]
        element.clear()
        if all(ord(ch) < 0x10000 for ch in value):
            element.send_keys(value)
        else:  # chromedriver types only the Basic Multilingual Plane
            self.d.execute_script("arguments[0].value = arguments[1]", element, value)

    def ask(self, kind: str, text: str, pair: str | None = None, **fields: str) -> dict[str, Any]:
        """Type the input (and ``fields``: element id -> value, "_" for "-"), press Predict, wait for the page ->
        the page's cards by task."""
        radio = self.find(f"#kind-{kind}")[0]
        if radio.is_displayed():  # (the choice is hidden when the model reads one kind only)
            radio.click()
        for box, value in (("#text-a", text), ("#text-b", pair)):
            if value is not None:
                self.type(box, value)
        for name, value in fields.items():
            self.type("#" + name.replace("_", "-"), value)
        done = self.body.get_attribute("data-done")
        self.find("#predict")[0].click()
        self.wait.until(lambda d: self.body.get_attribute("data-done") != done)
        return {c.get_attribute("data-task"): c for c in self.find("#results .task")}

    def server(self, item: Any, **body: Any) -> dict[str, Any]:
        r = httpx.post(self.base + "/predict", json={"texts": [item], **body}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["predictions"][0]

    def rows(self, card: Any) -> list[tuple[str, float, bool, str]]:
        """Score bars: (label, exact score, chosen, score as shown)."""
        return [(r.get_attribute("data-label"), float(r.get_attribute("data-score")), "on" in r.get_attribute("class"),
                 self.find(".num", r)[0].text) for r in self.find(".row", card)]

    def marks(self, card: Any) -> list[tuple[str, str]]:
        """Highlighted spans: (the text marked, its type)."""
        return [(self.find(".t", m)[0].get_attribute("textContent"), m.get_attribute("data-type"))
                for m in self.find("mark", card)]

    def json(self, which: str) -> Any:
        """What the page sent (``sent``) or received (``raw``), from its JSON box."""
        return json.loads(self.find(f"#{which}-json")[0].get_attribute("textContent"))

    def shown_text(self, card: Any) -> str:
        """The highlighted text as a reader sees it, without the type tags."""
        return self.d.execute_script(
            "return Array.from(arguments[0].childNodes).map(n => n.nodeType === 3 ? n.data :"
            " n.querySelector('.t').textContent).join('')", self.find(".marked", card)[0])


@pytest.fixture(scope="module")
def toy(browser, trained) -> Iterator[tuple[Page, Pipeline, dict[str, Any]]]:
    """Intent + slots + sentiment + multi-label topics on texts, similarity on pairs: one server for the module."""
    best = trained[1].best_dir
    pipe, metrics = Pipeline.from_pretrained(best), read_metrics(best)
    assert metrics is not None
    with served(create_app(pipe, metrics=metrics)) as base:
        yield Page(browser, base), pipe, metrics


def test_page_shows_tasks_labels_and_metrics(toy) -> None:
    page, pipe, metrics = toy
    rows = {r.get_attribute("data-task"): r for r in page.find("#tasks tbody tr")}
    assert list(rows) == list(pipe.tasks)
    for name, task in pipe.tasks.items():
        assert [c.text for c in page.find(".labels .chip", rows[name])] == task.get("labels", []), name
    validation, test = page.find(".metrics", rows["intent"])
    accuracy = metrics["validation"]["tasks"]["intent"]["accuracy"]
    assert page.find(".primary", validation)[0].text == f"accuracy {accuracy:.3f}"
    assert "40 examples" in test.text
    assert page.find("td", rows["topics"])[-1].text == "–"  # the topics data has no test split
    assert f"trained {metrics['step']} steps" in page.find("#summary")[0].text
    assert "multi-label, threshold 0.500" in rows["topics"].text
    assert [m.get_attribute("value") for m in page.find("#modes input")] == ["text", "pair"]


def test_text_answers_match_the_server(toy) -> None:
    page, _, _ = toy
    spans = 0
    for text in TEXTS:
        cards = page.ask("text", text)
        want = page.server(text)
        assert list(cards) == list(want) == ["intent", "slots", "sentiment", "topics"]  # similarity reads pairs
        for name in ("intent", "sentiment"):
            assert page.rows(cards[name]) == [(want[name]["label"], want[name]["score"], True,
                                               f"{want[name]['score']:.3f}")]
        topics = want["topics"]
        shown = page.rows(cards["topics"])
        assert {label: (score, on) for label, score, on, _ in shown} == {
            label: (score, label in topics["labels"]) for label, score in topics["scores"].items()}
        slots = want["slots"]["spans"]
        if slots:
            assert page.marks(cards["slots"]) == [(s["text"], s["type"]) for s in slots]
            assert [text[s["start"]:s["end"]] for s in slots] == [s["text"] for s in slots]
            assert page.shown_text(cards["slots"]) == text
        else:
            assert "no spans" in cards["slots"].text
        spans += len(slots)
        assert json.loads(page.find("#raw-json")[0].get_attribute("textContent")) == {"predictions": [want]}
    assert spans >= 2, "the toy model tags the city and the artists: the highlight check must not be vacuous"


def test_pair_answers_a_value(toy) -> None:
    page, _, _ = toy
    cards = page.ask("pair", "weather in rome", "the weather is great")
    want = page.server(["weather in rome", "the weather is great"])
    assert list(cards) == list(want) == ["similarity"]
    value = page.find(".value", cards["similarity"])[0]
    assert float(value.get_attribute("data-value")) == want["similarity"]["value"]
    assert value.text == f"{want['similarity']['value']:.3f}"


def test_none_answers_are_shown_as_none(toy) -> None:
    """Thresholds set on the served model (what `polytask calibrate --coverage` writes): intent answers "none",
    slots drops its spans, topics chooses no label; the page says so."""
    page, pipe, _ = toy
    tasks = pipe.model.tasks
    saved = (tasks["intent"].params.min_score, tasks["slots"].params.min_score, tasks["topics"].params.threshold)
    try:
        tasks["intent"].params.min_score = tasks["slots"].params.min_score = tasks["topics"].params.threshold = 1.0
        page.load()  # as after a restart of the server: the page reads the thresholds from GET /info
        cards = page.ask("text", TEXTS[0])
        want = page.server(TEXTS[0])
    finally:
        tasks["intent"].params.min_score, tasks["slots"].params.min_score, tasks["topics"].params.threshold = saved
    assert want["intent"]["label"] is None and want["intent"]["below_min_score"] is True
    assert page.find(".none", cards["intent"])[0].text == (f"none: the top score {want['intent']['score']:.3f} is "
                                                           "below min_score 1.000")
    assert not page.rows(cards["intent"])
    assert want["slots"]["spans"] == [] and want["slots"]["dropped"] >= 1
    assert not page.marks(cards["slots"])
    assert f"{want['slots']['dropped']} spans below min_score not shown" in cards["slots"].text
    assert want["topics"]["labels"] == [] and not any(on for _, _, on, _ in page.rows(cards["topics"]))
    assert "none: no label above the threshold 1.000" in cards["topics"].text
    page.load()


def test_user_text_never_becomes_markup(toy) -> None:
    page, _, _ = toy
    text = '<img src=x onerror="document.body.dataset.pwned=1"> weather in <u>paris</u> <script>x()</script>'
    cards = page.ask("text", text)
    assert page.find("#results img, #results u, #results script") == []
    assert page.body.get_attribute("data-pwned") is None
    assert json.loads(page.find("#raw-json")[0].get_attribute("textContent")) == {"predictions": [page.server(text)]}
    if page.find(".marked", cards["slots"]):
        assert page.shown_text(cards["slots"]) == text
    page.ask("text", "   ")  # refused in the page: nothing is sent
    assert page.find("#error")[0].text == "Type a text first." and not page.find("#results .task")


@pytest.fixture(scope="module")
def qa_page(browser, trained_qa_relations) -> Iterator[Page]:
    """Span QA on pairs, relation classification on marked entities, relation extraction + sentiment on texts."""
    best = trained_qa_relations[1].best_dir
    with served(create_app(Pipeline.from_pretrained(best), metrics=read_metrics(best))) as base:
        yield Page(browser, base)


def test_qa_and_relations_match_the_server(qa_page: Page) -> None:
    page = qa_page
    assert [m.get_attribute("value") for m in page.find("#modes input")] == ["text", "pair", "entities"]
    question, context = "where is the weather", "quite the show the weather in tokyo is great and the music by adele ."
    cards = page.ask("pair", question, context)
    qa = page.server([question, context])["qa"]
    assert list(cards) == ["qa"] and qa["answer"]
    assert page.marks(cards["qa"]) == [(qa["answer"], "answer")] and page.shown_text(cards["qa"]) == context
    assert page.rows(cards["qa"])[0][:2] == (qa["answer"], qa["score"])

    marked = "the <e1>cat</e1> in the <e2>dog</e2> was great ."
    cards = page.ask("entities", marked)
    rel = page.server(marked)["relation"]
    assert list(cards) == ["relation"]
    assert page.marks(cards["relation"]) == [(rel["e1"]["text"], "e1"), (rel["e2"]["text"], "e2")] == [
        ("cat", "e1"), ("dog", "e2")]
    assert page.shown_text(cards["relation"]) == "the cat in the dog was great ."
    assert page.rows(cards["relation"]) == [(rel["label"], rel["score"], True, f"{rel['score']:.3f}")]

    sentence = "sting lives in oslo ."
    cards = page.ask("text", sentence)
    joint = page.server(sentence)["joint"]
    assert list(cards) == ["joint", "sentiment"] and joint["entities"] and joint["relations"]
    assert page.marks(cards["joint"]) == [(e["text"], e["type"]) for e in joint["entities"]]
    listed = [(page.find(".head", li)[0].text, li.get_attribute("data-type"), page.find(".tail", li)[0].text)
              for li in page.find("li.relation", cards["joint"])]
    assert listed == [(r["head_text"], r["type"], r["tail_text"]) for r in joint["relations"]]

    cards = page.ask("entities", "the <e1>cat <e2>in</e1> the dog</e2> .")  # the server refuses nested markers
    assert not cards and "422: " in page.find("#error")[0].text and "overlap or nest" in page.find("#error")[0].text
    cards = page.ask("entities", "the cat in the dog")  # no markers: the page asks for them, sends nothing
    assert not cards and "Mark the two entities" in page.find("#error")[0].text


# ----------------------------------------------------------------------------------------------------------------------
# generated text and dialogue turns: tiny models trained in memory for a few steps (the answers need not be good,
# only the same on the page as in the server's JSON)


def quick_pipeline(raw: dict[str, Any], steps: int) -> Pipeline:
    """A model of ``raw`` trained ``steps`` AdamW steps of 16 rows on each source's train split, as a Pipeline."""
    import torch

    from polytask.config import validate_config
    from polytask.data.batching import collate
    from polytask.data.loading import build_tasks, load_data
    from polytask.encoder import load_encoder
    from polytask.train import build_model

    cfg = validate_config(raw)
    tasks = build_tasks(cfg)
    encoder, tokenizer = load_encoder(cfg.encoder.name)
    data = load_data(cfg, tokenizer, splits=("train",), tasks=tasks, fit=True)
    torch.manual_seed(0)
    model = build_model(cfg, data, encoder, tokenizer).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for source, split in data.splits["train"].items():
        names, n = [t for t, task in tasks.items() if task.params.dataset == source], len(split.features)
        for step in range(steps):
            batch = collate(split, [(step * 16 + i) % n for i in range(min(16, n))], tasks, tokenizer.pad_token_id)
            out = model(batch.inputs, batch.task_inputs, names)
            loss = sum(tasks[t].loss(out[t], batch.targets[t]) for t in names)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return Pipeline(model.eval())


@pytest.fixture(scope="module")
def s2s_page(browser, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """A seq2seq task (the target names the city and the artist of the source) beside a sentiment classifier, both
    on texts, served with --max-beams 3 --max-new-tokens 5."""
    from conftest import make_sentiment_csv
    from toydata import make_parallel

    folder = tmp_path_factory.mktemp("page-s2s")
    make_parallel(folder / "train", 32, 1)
    make_sentiment_csv(folder / "sentiment.csv", 32, 1)
    pipe = quick_pipeline({
        "encoder": {"name": tiny_encoder, "max_length": 24},
        "datasets": {"par": {"format": "parallel", "train": str(folder / "train"), "text": "src",
                             "options": {"suffixes": ["src", "tgt"]}},
                     "sent": {"format": "csv", "train": str(folder / "sentiment.csv"), "text": "sentence"}},
        "tasks": {"translate": {"type": "seq2seq", "dataset": "par", "label": "tgt", "max_target_length": 6,
                                "decoder_layers": 1},
                  "sentiment": {"type": "classification", "dataset": "sent", "label": "label"}},
        "train": {"output_dir": str(folder / "out")}}, steps=25)
    with served(create_app(pipe, max_beams=3, max_new_tokens=5)) as base:
        yield Page(browser, base)


def test_generated_text_with_settings_matches_the_server(s2s_page: Page) -> None:
    page = s2s_page
    assert not page.find("#generation")[0].get_attribute("hidden")
    assert (page.find("#num-beams")[0].get_attribute("max"), page.find("#max-new-tokens")[0].get_attribute("max")) \
        == ("3", "5")  # the server's bounds, from GET /info
    assert page.find("#num-beams")[0].get_attribute("placeholder") == "1"  # the task's own num_beams
    text = "please music by sting in oslo now"
    cards = page.ask("text", text, num_beams="2", max_new_tokens="4")
    settings = {"num_beams": 2, "max_new_tokens": 4}
    want = page.server(text, generation=settings)
    assert page.json("sent") == {"texts": [text], "generation": settings}
    assert page.json("raw") == {"predictions": [want]} and list(cards) == ["translate", "sentiment"]
    assert want["translate"]["text"], "the tiny model writes a text: the comparison must not be vacuous"
    shown = page.find(".generated", cards["translate"])[0]
    assert shown.get_attribute("textContent") == want["translate"]["text"] and not page.find("*", shown)
    assert page.rows(cards["sentiment"])[0][:2] == (want["sentiment"]["label"], want["sentiment"]["score"])

    cards = page.ask("text", text, num_beams="", max_new_tokens="1")  # only what is filled is sent
    assert page.json("sent") == {"texts": [text], "generation": {"max_new_tokens": 1}}
    assert page.json("raw") == {"predictions": [page.server(text, generation={"max_new_tokens": 1})]}

    # above --max-beams: the browser does not send it (the field's max is the server's bound)
    page.type("#num-beams", "9")
    done = page.body.get_attribute("data-done")
    page.find("#predict")[0].click()
    assert page.d.execute_script("return arguments[0].validity.rangeOverflow", page.find("#num-beams")[0])
    assert page.body.get_attribute("data-done") == done


@pytest.fixture(scope="module")
def dialogue_page(browser, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """Intent, requested slots, slot tags and dialogue state of the synthetic SGD data (16 training dialogues)."""
    from dialogue_data import sgd_config, write_sgd_split

    root = tmp_path_factory.mktemp("page-sgd")
    raw = sgd_config(root, tiny_encoder, root / "out")
    write_sgd_split(root / "train", 16, 1)  # fewer training dialogues than the config's 40: a faster fixture
    with served(create_app(quick_pipeline(raw, steps=25))) as base:
        yield Page(browser, base)


def test_dialogue_turns_carry_the_state(dialogue_page: Page) -> None:
    page = dialogue_page
    assert page.find("#modes")[0].get_attribute("hidden") and not page.find("#dialogue")[0].get_attribute("hidden")
    assert page.find("#generation")[0].get_attribute("hidden")  # no generating task
    assert [o.get_attribute("value") for o in page.find("#service option")] == ["", "Music_1", "Weather_1"]
    page.find("#service option[value='Music_1']")[0].click()

    first = {"text": "play a song by adele", "history": [], "service": "Music_1"}
    cards = page.ask("dialogue", first["text"])
    want = page.server(first)
    assert page.json("sent") == {"texts": [first]} and page.json("raw") == {"predictions": [want]}
    assert list(cards) == ["intent", "requested", "slots", "state"]
    assert page.rows(cards["intent"])[0][:2] == (want["intent"]["label"], want["intent"]["score"])
    assert page.marks(cards["slots"]) == [(s["text"], s["type"]) for s in want["slots"]["spans"]]
    state = want["state"]
    assert state["state"], "the tiny model fills a slot on the first turn: the carried state must not be empty"
    assert _state_rows(page, cards["state"]) == {s: (v, s in state["updates"]) for s, v in state["state"].items()}

    second = {"text": "what is the album", "history": ["play a song by adele", "playing it now ."],
              "previous_state": state["state"], "service": "Music_1"}
    cards = page.ask("dialogue", second["text"], history="\n".join(second["history"]) + "\n\n")  # blank lines dropped
    want = page.server(second)
    assert page.json("sent") == {"texts": [second]} and page.json("raw") == {"predictions": [want]}
    assert _state_rows(page, cards["state"]) == {s: (v, s in want["state"]["updates"])
                                                 for s, v in want["state"]["state"].items()}
    assert "previous_state artist = " in page.find("#carried")[0].text

    page.find("#new-dialogue")[0].click()  # clears the carried state and the history
    assert page.find("#history")[0].get_attribute("value") == "" and "New dialogue" in page.find("#carried")[0].text
    page.ask("dialogue", "<u>in paris</u> please.")  # typed markup stays text
    assert page.json("sent") == {"texts": [{"text": "<u>in paris</u> please.", "history": [], "service": "Music_1"}]}
    assert not page.find("#results u") and page.find("#results .task")


def _state_rows(page: Page, card: Any) -> dict[str, tuple[str, bool]]:
    """The state table: slot -> (value, highlighted as set by this turn)."""
    return {r.get_attribute("data-slot"): (r.get_attribute("data-value"), "updated" in (r.get_attribute("class") or ""))
            for r in page.find("table.state tbody tr", card) if "removed" not in (r.get_attribute("class") or "")}
