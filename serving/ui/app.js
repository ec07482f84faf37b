// The explanation page: plain JavaScript on TensorFlow Serving's REST API, nothing else.
"use strict";

const $ = (id) => document.getElementById(id);
const models = JSON.parse($("models").textContent);
let current = { model: null, version: null };

async function call(path, body) {
  const r = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await r.json();
  if (!r.ok) throw new Error(answer.error || `HTTP ${r.status}`);
  return answer;
}

// The newest AVAILABLE version: requests name it, so the answer comes from the version shown.
async function chooseModel(name) {
  const status = await call(`/v1/models/${encodeURIComponent(name)}`);
  const ready = status.model_version_status.filter((v) => v.state === "AVAILABLE").map((v) => Number(v.version));
  if (!ready.length) throw new Error(`model ${name} has no available version`);
  current = { model: name, version: Math.max(...ready) };
  $("version").textContent = `version ${current.version}`;
  $("explain").disabled = false;
}

function predict(body) {
  return call(`/v1/models/${encodeURIComponent(current.model)}/versions/${current.version}:predict`, body);
}

function showLabels(decision, why) {
  // serving_default decides (multi-label: its thresholds); explain gives every label's probability.
  const on = decision.predicted
    ? new Set(why.classes.filter((_, i) => decision.predicted[i]))
    : new Set([decision.label]);
  const rows = why.classes.map((name, i) => ({ name, p: why.probabilities[i] })).sort((a, b) => b.p - a.p);
  const table = $("labels");
  table.replaceChildren();
  for (const { name, p } of rows) {
    const tr = table.insertRow();
    tr.dataset.label = name;
    if (on.has(name)) tr.classList.add("predicted");
    if (name === why.label) tr.classList.add("explained");
    tr.insertCell().textContent = name;
    tr.cells[0].className = "name";
    const bar = tr.insertCell();
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bar.append(fill);
    tr.insertCell().textContent = p.toFixed(3);
    tr.addEventListener("click", () => run(name));
  }
}

// The original text, each token's characters shaded by its score: warm for, cool against.
function showTokens(text, why) {
  const n = why.tokens.findIndex((t) => t === "");
  const count = n < 0 ? why.tokens.length : n;
  const items = [];
  for (let i = 0; i < count; i++) {
    items.push({ token: why.tokens[i], start: why.starts[i], end: why.ends[i], score: why.scores[i] });
  }
  const top = Math.max(1e-12, ...items.map((t) => Math.abs(t.score)));
  const chars = Array.from(text); // spans count characters (code points), as Python does
  const placed = items.filter((t) => t.start >= 0).sort((a, b) => a.start - b.start);
  const box = $("tokens");
  box.replaceChildren();
  let at = 0;
  for (const t of placed) {
    if (t.start < at) continue;
    if (t.start > at) box.append(chars.slice(at, t.start).join(""));
    const span = document.createElement("span");
    span.className = "tok";
    span.textContent = chars.slice(t.start, t.end).join("");
    span.dataset.score = String(t.score);
    span.title = `${t.token}: ${t.score.toFixed(4)}`;
    const alpha = Math.abs(t.score) / top;
    span.style.backgroundColor = t.score >= 0 ? `rgba(220, 90, 20, ${alpha.toFixed(3)})` : `rgba(40, 110, 220, ${alpha.toFixed(3)})`;
    box.append(span);
    at = t.end;
  }
  if (at < chars.length) box.append(chars.slice(at).join(""));
  const lost = items.filter((t) => t.start < 0);
  $("unplaced").hidden = !lost.length;
  $("unplaced").textContent = lost.length ? `tokens with no place in the text: ${lost.map((t) => `${t.token} ${t.score.toFixed(3)}`).join(", ")}` : "";
}

async function run(label) {
  const text = $("text").value;
  $("error").hidden = true;
  $("busy").hidden = false;
  try {
    const [decision, why] = await Promise.all([
      predict({ instances: [text] }),
      predict({ signature_name: "explain", instances: [{ text, method: $("method").value, label: label || "" }] }),
    ]);
    const w = why.predictions[0];
    showLabels(decision.predictions[0], w);
    $("explained").textContent = `${w.label} (${w.probability.toFixed(3)}) by ${w.method.replace("_", " ")}`
      + (w.method === "integrated_gradients" ? `, gap ${w.ig_gap.toFixed(4)}` : "");
    showTokens(text, w);
    $("result").hidden = false;
  } catch (e) {
    $("error").textContent = e.message;
    $("error").hidden = false;
  } finally {
    $("busy").hidden = true;
  }
}

async function start() {
  for (const name of models) $("model").add(new Option(name, name));
  $("model").addEventListener("change", () => chooseModel($("model").value).catch(fail));
  $("explain").addEventListener("click", () => run());
  $("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });
  if (models.length) await chooseModel(models[0]);
}

function fail(e) {
  $("error").textContent = e.message;
  $("error").hidden = false;
}

start().catch(fail);
