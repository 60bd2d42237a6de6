// The page to try a polytask model: reads GET /info, sends what is typed to POST /predict, draws every task's answer.
// Text from the user or the model goes into the page only as text nodes (textContent / append of strings), never
// as HTML. Answers are drawn by their shape (the keys documented in docs/cli.md#server), so a task type added as a
// plugin is drawn too when its answers have a known shape, and shown as JSON otherwise. Generation settings are
// offered for the tasks /info marks as generating; a dialogue answer's state is sent back as previous_state.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const KINDS = {
    text: {title: "Text", a: "Text", placeholder: "what is the weather in paris today"},
    pair: {title: "Pair", a: "Text (or question)", b: "Text pair (or context)"},
    entities: {title: "Entity pair", a: "Text with <e1>…</e1> and <e2>…</e2> around the two entities",
               placeholder: "The <e1>company</e1> makes <e2>chairs</e2>."},
    dialogue: {title: "Dialogue turn", a: "User turn", placeholder: "i want to eat in san jose"},
  };
  const MARKERS = ["<e1>", "</e1>", "<e2>", "</e2>"];
  // previous: the dialogue state the last dialogue answer returned, sent as previous_state with the next turn
  const state = {info: null, kind: "text", done: 0, previous: null};

  // an element with attributes and children; strings become text nodes
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children) if (child !== undefined && child !== null) node.append(child);
    return node;
  }
  const fmt = (x) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(3) : "–");
  // colour class of a span type: the same type gets the same colour on every card
  const colour = (type) => "c" + ([...String(type)].reduce((h, ch) => (h * 31 + ch.codePointAt(0)) >>> 0, 7) % 8);

  function bar(label, score, on) {
    const fill = el("span", {class: "fill"});
    fill.style.width = Math.max(0, Math.min(1, Number(score) || 0)) * 100 + "%";  // CSSOM: allowed by the CSP
    return el("div", {class: "row" + (on ? " on" : ""), "data-label": label, "data-score": score},
              el("span", {class: "lab"}, label), el("span", {class: "bar"}, fill),
              el("span", {class: "num"}, fmt(score)));
  }

  // ``text`` with [start, end) spans marked; offsets are Unicode code points (Python's), not UTF-16 units
  function highlight(text, spans) {
    const chars = Array.from(text);
    const out = el("p", {class: "marked"});
    const usable = spans.filter((s) => Number.isInteger(s.start) && Number.isInteger(s.end) &&
                                       s.start >= 0 && s.start < s.end && s.end <= chars.length)
                        .sort((x, y) => x.start - y.start);
    let at = 0;
    for (const s of usable) {
      if (s.start < at) continue;  // overlapping spans: the first one is drawn
      out.append(chars.slice(at, s.start).join(""));
      out.append(el("mark", {class: colour(s.type), "data-type": s.type},
                    el("span", {class: "t"}, chars.slice(s.start, s.end).join("")),
                    el("span", {class: "tag"}, s.type)));
      at = s.end;
    }
    out.append(chars.slice(at).join(""));
    return out;
  }

  const none = (...text) => el("p", {class: "none"}, ...text);
  const dropped = (p, what) => (p.dropped ? none(`${p.dropped} ${what} below min_score not shown`) : null);

  function oneLabel(p, task) {
    if (p.label === null) {  // below_min_score: the model answers "none"
      const min = (task.params || {}).min_score;
      return el("div", {class: "view"}, none("none: the top score ", fmt(p.score), " is below min_score ", fmt(min)));
    }
    return el("div", {class: "view"}, bar(p.label, p.score, true));
  }

  function multiLabel(p, task) {
    const threshold = (task.params || {}).threshold;
    const rows = Object.entries(p.scores).sort((x, y) => y[1] - x[1])
      .map(([label, score]) => bar(label, score, p.labels.includes(label)));
    const note = p.labels.length ? `labels above the threshold ${fmt(threshold)} are chosen`
                                 : `none: no label above the threshold ${fmt(threshold)}`;
    return el("div", {class: "view"}, ...rows, el("p", {class: p.labels.length ? "muted" : "none"}, note));
  }

  function spanList(items) {
    return el("ul", {class: "spans"}, ...items.map((s) => el("li", {}, el("b", {}, s.type), " ", s.text,
                                                              " ", el("span", {class: "muted"}, fmt(s.score)))));
  }

  function spans(p, text) {
    if (!p.spans.length) return el("div", {class: "view"}, none("no spans"), dropped(p, "spans"));
    return el("div", {class: "view"}, highlight(text, p.spans), spanList(p.spans), dropped(p, "spans"));
  }

  function relations(p, text) {
    const list = p.relations.map((r) => el("li", {class: "relation", "data-type": r.type},
      el("span", {class: "head"}, r.head_text ?? (p.entities[r.head] || {}).text), " ",
      el("span", {class: "rtype"}, "→ " + r.type + " →"), " ",
      el("span", {class: "tail"}, r.tail_text ?? (p.entities[r.tail] || {}).text), " ",
      el("span", {class: "muted"}, fmt(r.score))));
    return el("div", {class: "view"},
              p.entities.length ? highlight(text, p.entities) : none("no entities"),
              list.length ? el("ul", {class: "relations"}, ...list) : none("no relations"),
              dropped(p, "relations"));
  }

  function relationLabel(p, task, text) {
    const ents = ["e1", "e2"].map((name) => ({...p[name], type: name}));
    return el("div", {class: "view"}, highlight(text, ents), oneLabel(p, task));
  }

  function answer(p, context) {
    if (p.start === null || p.start === undefined || p.answer === "") {
      return el("div", {class: "view"}, none("no answer"));
    }
    return el("div", {class: "view"}, highlight(context, [{start: p.start, end: p.end, type: "answer"}]),
              bar(p.answer, p.score, true));
  }

  function regression(p) {
    return el("div", {class: "view"}, el("p", {class: "value", "data-value": p.value}, fmt(p.value)));
  }

  // generated text (seq2seq): a text node, so markup the model writes stays text
  function generated(p) {
    return el("div", {class: "view"}, p.text ? el("p", {class: "generated"}, p.text) : none("empty text"));
  }

  const valueText = (v) => (Array.isArray(v) ? v.join(" | ") : String(v));

  // the state after the turn as a slot: value table; slots this turn set are highlighted, removed ones struck out
  function dialogueState(p) {
    const updates = p.updates || {};
    const changed = (slot) => Object.prototype.hasOwnProperty.call(updates, slot);
    const rows = Object.entries(p.state).map(([slot, value]) =>
      el("tr", {class: changed(slot) ? "updated" : null, "data-slot": slot, "data-value": valueText(value)},
         el("td", {}, slot), el("td", {}, valueText(value))));
    for (const [slot, value] of Object.entries(updates)) {
      if (value === null) rows.push(el("tr", {class: "removed", "data-slot": slot}, el("td", {}, slot),
                                        el("td", {}, "removed")));
    }
    if (!rows.length) return el("div", {class: "view"}, none("empty state: no slot has a value"));
    const n = Object.keys(updates).length;
    return el("div", {class: "view"},
              el("table", {class: "state"}, el("thead", {}, el("tr", {}, el("th", {}, "slot"), el("th", {}, "value"))),
                 el("tbody", {}, ...rows)),
              el("p", {class: "muted"}, n ? `highlighted: set by this turn (${n})` : "this turn changed nothing"));
  }

  const isState = (p) => p && typeof p.state === "object" && p.state !== null && typeof p.updates === "object";

  function view(p, task, ctx) {
    const has = (...keys) => keys.every((k) => p && Object.prototype.hasOwnProperty.call(p, k));
    if (has("labels", "scores")) return multiLabel(p, task);
    if (has("label", "score", "e1", "e2")) return relationLabel(p, task, ctx.text);
    if (has("label", "score")) return oneLabel(p, task);
    if (has("spans")) return spans(p, ctx.text);
    if (has("entities", "relations")) return relations(p, ctx.text);
    if (has("answer", "start", "end")) return answer(p, ctx.pair ?? ctx.text);
    if (has("value")) return regression(p);
    if (isState(p)) return dialogueState(p);
    if (has("text") && typeof p.text === "string") return generated(p);
    return el("pre", {class: "view"}, JSON.stringify(p, null, 2));
  }

  function showResults(prediction, ctx) {
    const tasks = state.info.tasks;
    const cards = Object.entries(prediction).map(([name, p]) => {
      const task = tasks[name] || {};
      return el("article", {class: "task", "data-task": name},
                el("h3", {}, name, " ", el("span", {class: "muted"}, task.type || "")), view(p, task, ctx));
    });
    $("results").replaceChildren(...cards);
    $("sent-json").textContent = JSON.stringify(ctx.body, null, 2);
    $("raw-json").textContent = JSON.stringify({predictions: [prediction]}, null, 2);
    $("raw").hidden = false;
  }

  function showError(message, problems) {
    $("results").replaceChildren();  // no answers of an earlier input beside the error
    $("raw").hidden = true;
    const box = $("error");
    box.replaceChildren(el("b", {}, message));
    if (problems && problems.length) {
      box.append(el("ul", {}, ...problems.map((x) => el("li", {}, el("code", {}, x.where), ": ", x.problem))));
    }
    box.hidden = false;
  }

  // what the form holds -> the request body and where answers' offsets point, or an error message
  function readForm() {
    const a = $("text-a").value, b = $("text-b").value, kind = state.kind;
    if (!a.trim() || (kind === "pair" && !b.trim())) {
      return {problem: "Type a text first" + (kind === "pair" ? " in both boxes." : ".")};
    }
    if (kind === "entities" && !MARKERS.every((m) => a.split(m).length === 2)) {
      return {problem: "Mark the two entities with <e1>…</e1> and <e2>…</e2>, each once."};
    }
    // the offsets of relation answers point into the text without its markers
    const ctx = kind === "entities" ? {text: MARKERS.reduce((t, m) => t.split(m).join(""), a)}
                                    : {text: a, pair: kind === "pair" ? b : undefined};
    const item = kind === "pair" ? [a, b] : kind === "dialogue" ? dialogueTurn(a) : a;
    const body = {texts: [item]};
    const generation = generationSettings(kind);
    if (generation) body.generation = generation;
    ctx.body = body;
    return {body, ctx};
  }

  // the user turn, the history box (one turn a line, oldest first, the last one the system's: the server reads
  // plain strings that way), the state of the last answer and the chosen service
  function dialogueTurn(text) {
    const history = $("history").value.split("\n").map((line) => line.trim()).filter(Boolean);
    const turn = {text, history};
    if (state.previous) turn.previous_state = state.previous;
    if ($("service").value) turn.service = $("service").value;
    return turn;
  }

  const generatingTasks = (kind) => Object.entries(state.info.tasks)
    .filter(([, t]) => t.generates && t.input === kind);

  // the beams and token fields, when this kind has a generating task and a field is filled; the server checks
  // the bounds (--max-beams, --max-new-tokens) and answers 422 naming the field when one is passed
  function generationSettings(kind) {
    if (!generatingTasks(kind).length) return null;
    const out = {};
    for (const [id, key] of [["num-beams", "num_beams"], ["max-new-tokens", "max_new_tokens"]]) {
      const raw = $(id).value.trim();
      if (raw !== "") out[key] = Number(raw);
    }
    return Object.keys(out).length ? out : null;
  }

  function showCarried() {
    const slots = Object.entries(state.previous || {});
    $("carried").textContent = state.previous === null
      ? "New dialogue: the first turn starts from an empty state."
      : "The next turn is sent with previous_state " +
        (slots.length ? slots.map(([k, v]) => `${k} = ${valueText(v)}`).join(", ") : "{} (empty)") +
        ". Add this turn and the system's reply to the history before sending it.";
  }

  function newDialogue() {
    state.previous = null;
    $("history").value = "";
    $("text-a").value = "";
    $("results").replaceChildren();
    $("raw").hidden = true;
    $("error").hidden = true;
    showCarried();
  }

  async function ask(body, ctx) {
    const started = performance.now();
    $("status").textContent = "running…";
    try {
      const response = await fetch("predict", {method: "POST", headers: {"content-type": "application/json"},
                                               body: JSON.stringify(body)});
      const answer = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
      if (!response.ok) {
        $("status").textContent = "";
        showError(`${response.status}: ${answer.error}`, answer.problems);
        return;
      }
      showResults(answer.predictions[0], ctx);
      if (state.kind === "dialogue") {  // keep the returned state for the next turn
        const tracked = Object.values(answer.predictions[0]).find(isState);
        if (tracked) state.previous = tracked.state;
        showCarried();
      }
      $("status").textContent = `answered in ${Math.round(performance.now() - started)} ms`;
    } catch (err) {
      $("status").textContent = "";
      showError("The server did not answer: " + err);
    }
  }

  async function predict(event) {
    event.preventDefault();
    $("error").hidden = true;
    $("predict").disabled = true;
    try {
      const form = readForm();
      if (form.problem) showError(form.problem);
      else await ask(form.body, form.ctx);
    } finally {
      $("predict").disabled = false;
      document.body.dataset.done = String(++state.done);  // for scripted use: inputs answered (or refused) so far
    }
  }

  function setKind(kind) {
    state.kind = kind;
    const spec = KINDS[kind];
    $("label-a").textContent = spec.a;
    $("label-b").textContent = spec.b || "";
    $("text-a").placeholder = spec.placeholder || "";
    $("pair").hidden = kind !== "pair";
    $("dialogue").hidden = kind !== "dialogue";
    $("generation").hidden = !generatingTasks(kind).length;
    const names = Object.entries(state.info.tasks).filter(([, t]) => t.input === kind).map(([n]) => n);
    $("hint").textContent = "Answered by: " + names.join(", ");
    $("results").replaceChildren();
    $("raw").hidden = true;
    $("error").hidden = true;
  }

  function metricCell(scores, primary) {
    if (!scores) return el("td", {class: "muted"}, "–");
    // the temperatures are under settings; the ECE before calibration is left to `polytask evaluate`
    const keep = Object.entries(scores).filter(([k, v]) => typeof v === "number" && k !== "examples" &&
                                                           !k.startsWith("temperature") &&
                                                           !k.startsWith("ece_uncalibrated"));
    keep.sort((x, y) => (y[0] === primary) - (x[0] === primary));
    return el("td", {class: "metrics"}, ...keep.map(([k, v]) => el("div", {class: k === primary ? "primary" : ""},
                                                                   k + " " + fmt(v))),
              scores.examples !== undefined ? el("div", {class: "muted"}, `${scores.examples} examples`) : null);
  }

  function taskRow(name, task, metrics) {
    const labels = el("td", {class: "labels"});
    const settings = [];
    for (const [key, value] of Object.entries(task)) {
      if (["type", "input", "primary_metric", "params", "multi_label", "temperature"].includes(key)) continue;
      if (Array.isArray(value)) {
        labels.append(el("div", {"data-key": key}, key === "labels" ? null : el("i", {}, key + ": "),
                         ...value.map((v) => el("span", {class: "chip"}, String(v)))));
      } else if (typeof value === "number") {
        settings.push(`${key} ${fmt(value)}`);
      }
    }
    const params = task.params || {};
    if (task.multi_label) settings.push(`multi-label, threshold ${fmt(params.threshold)}`);
    if (params.min_score) settings.push(`min_score ${fmt(params.min_score)}`);
    for (const [head, t] of Object.entries(task.temperature || {})) settings.push(`temperature ${head} ${fmt(t)}`);
    const split = (s) => ((metrics || {})[s] || {}).tasks || {};
    return el("tr", {"data-task": name}, el("td", {}, el("b", {}, name)), el("td", {}, task.type),
              el("td", {}, task.input), labels, el("td", {}, settings.join("; ") || "–"),
              metricCell(split("validation")[name], task.primary_metric),
              metricCell(split("test")[name], task.primary_metric));
  }

  function showModel(info) {
    const e = info.encoder, m = info.metrics;
    const parts = [e.name, e.model_type, e.layers && `${e.layers} layers`, e.hidden_size && `hidden ${e.hidden_size}`,
                   e.parameters && (e.parameters >= 1e6 ? `${(e.parameters / 1e6).toFixed(1)}M parameters`
                                                        : `${e.parameters.toLocaleString("en")} parameters`),
                   e.max_length && `max_length ${e.max_length}`].filter(Boolean);
    $("encoder").textContent = "Encoder: " + parts.join(" · ");
    const n = Object.keys(info.tasks).length;
    $("summary").textContent = `${n} task${n === 1 ? "" : "s"} from one encoder` +
      (m && m.step !== undefined ? `, trained ${m.step} steps` : "") +
      (m && typeof m.best_metric === "number" ? `, best ${m.metric} on validation ${fmt(m.best_metric)}` : "") +
      (m ? "" : " (no stored metrics)");
    $("tasks").tBodies[0].replaceChildren(...Object.entries(info.tasks).map(([k, t]) => taskRow(k, t, m)));
    const kinds = Object.keys(KINDS).filter((k) => Object.values(info.tasks).some((t) => t.input === k));
    const modes = $("modes");
    for (const kind of kinds) {
      const radio = el("input", {type: "radio", name: "kind", value: kind, id: "kind-" + kind});
      radio.addEventListener("change", () => setKind(kind));
      modes.append(el("label", {for: "kind-" + kind}, radio, " " + KINDS[kind].title));
    }
    modes.hidden = kinds.length < 2;
    const first = kinds[0] || "text";
    $("kind-" + first).checked = true;
    for (const id of ["text-a", "text-b"]) $(id).maxLength = info.limits.max_chars;
    setupGeneration(info);
    setupDialogue(info);
    setKind(first);
    $("predict").disabled = false;
    document.body.dataset.ready = "true";  // for scripted use (tests, screenshots): the page is set up
  }

  // the fields' bounds are the server's; empty fields leave each task its own settings (shown as placeholders)
  function setupGeneration(info) {
    const limits = info.limits, own = Object.values(info.tasks).filter((t) => t.generates).map((t) => t.params || {});
    $("num-beams").max = limits.max_beams;
    $("max-new-tokens").max = limits.max_new_tokens;
    const first = own[0] || {};
    if (first.num_beams !== undefined) $("num-beams").placeholder = String(first.num_beams);
    const tokens = first.max_new_tokens ?? first.max_target_length;
    if (tokens !== undefined && tokens !== null) $("max-new-tokens").placeholder = String(tokens);
    $("generation-note").textContent = `at most ${limits.max_beams} beams and ${limits.max_new_tokens} tokens ` +
      "(the server's --max-beams, --max-new-tokens); empty: each task's own";
  }

  // the services the dialogue tasks were trained on (their service_slots), offered to restrict the state's slots
  function setupDialogue(info) {
    const services = new Set();
    for (const t of Object.values(info.tasks)) {
      if (t.input === "dialogue" && t.service_slots && typeof t.service_slots === "object") {
        for (const name of Object.keys(t.service_slots)) services.add(name);
      }
    }
    $("service").append(...[...services].sort().map((name) => el("option", {value: name}, name)));
    $("service-box").hidden = services.size === 0;
    $("new-dialogue").addEventListener("click", newDialogue);
    showCarried();
  }

  async function start() {
    $("form").addEventListener("submit", predict);
    $("form").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("form").requestSubmit();
    });
    try {
      const response = await fetch("info");
      if (!response.ok) throw new Error(`GET /info: HTTP ${response.status}`);
      state.info = await response.json();
      showModel(state.info);
    } catch (err) {
      $("summary").textContent = "";
      showError("Could not read the model: " + err);
    }
  }
  document.addEventListener("DOMContentLoaded", start);
})();
