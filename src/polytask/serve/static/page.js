// The page to try a polytask model: reads GET /info, sends what is typed to POST /predict, draws every task's answer.
// Text from the user or the model goes into the page only as text nodes (textContent / append of strings), never
// as HTML. Answers are drawn by their shape (the keys documented in docs/cli.md#server), so a task type added as a
// plugin is drawn too when its answers have a known shape, and shown as JSON otherwise.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const KINDS = {
    text: {title: "Text", a: "Text", placeholder: "what is the weather in paris today"},
    pair: {title: "Pair", a: "Text (or question)", b: "Text pair (or context)"},
    entities: {title: "Entity pair", a: "Text with <e1>…</e1> and <e2>…</e2> around the two entities",
               placeholder: "The <e1>company</e1> makes <e2>chairs</e2>."},
  };
  const MARKERS = ["<e1>", "</e1>", "<e2>", "</e2>"];
  const state = {info: null, kind: "text", done: 0};

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

  function view(p, task, ctx) {
    const has = (...keys) => keys.every((k) => p && Object.prototype.hasOwnProperty.call(p, k));
    if (has("labels", "scores")) return multiLabel(p, task);
    if (has("label", "score", "e1", "e2")) return relationLabel(p, task, ctx.text);
    if (has("label", "score")) return oneLabel(p, task);
    if (has("spans")) return spans(p, ctx.text);
    if (has("entities", "relations")) return relations(p, ctx.text);
    if (has("answer", "start", "end")) return answer(p, ctx.pair ?? ctx.text);
    if (has("value")) return regression(p);
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
    return {body: {texts: [kind === "pair" ? [a, b] : a]}, ctx};
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
    setKind(first);
    $("predict").disabled = false;
    document.body.dataset.ready = "true";  // for scripted use (tests, screenshots): the page is set up
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
