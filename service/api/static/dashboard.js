// Xent dashboard: lists /v1/monitors and charts one monitor's metrics; polls every few seconds.
// Same origin only (the page's Content-Security-Policy allows nothing else); no library.
"use strict";

const KEY_STORAGE = "xent-api-key";
const POLL_MS = 5000;
const POINTS = 60;
const SECONDS = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
const METRICS = ["cross_entropy", "ece", "accuracy", "n", "n_labelled"];
const LM_METRICS = ["token_perplexity", "nll_per_token", "bits_per_byte", "n_sequences", "n_tokens"];
const params = new URLSearchParams(window.location.search);
let reliabilityUrl = null;

function $(id) { return document.getElementById(id); }

function setStatus(text, error) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(error));
}

class Unauthorized extends Error {}

async function api(path) {
  const headers = {};
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized("an API key is required");
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return response;
}

function seconds(duration) {
  const match = /^(\d+(?:\.\d+)?)([smhdw]?)$/.exec(duration);
  return match ? Number(match[1]) * SECONDS[match[2] || "s"] : 3600;
}

function format(name, value) {
  if (value === null || value === undefined) return "–";
  if (name === "n" || name.startsWith("n_")) return String(value);
  return Number(value).toPrecision(6);
}

function showCurrent(point, metrics = METRICS) {
  for (const name of metrics) {
    const element = document.querySelector(`[data-metric="${name}"]`);
    const value = point ? point[name] : null;
    element.textContent = format(name, value);
    element.dataset.value = value === null || value === undefined ? "" : String(value);
  }
}

function drawChart(svg, points, name) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const ns = "http://www.w3.org/2000/svg";
  const values = points.map((p) => p[name]).filter((v) => v !== null && Number.isFinite(Number(v)));
  if (values.length === 0) {
    const text = document.createElementNS(ns, "text");
    text.setAttribute("x", "200");
    text.setAttribute("y", "60");
    text.setAttribute("text-anchor", "middle");
    text.textContent = "no data";
    svg.appendChild(text);
    return;
  }
  const lo = Math.min(...values.map(Number), 0);
  const hi = Math.max(...values.map(Number));
  const span = hi > lo ? hi - lo : 1;
  const t0 = points[0].start;
  const t1 = points[points.length - 1].end;
  const x = (t) => 30 + ((t - t0) / (t1 - t0)) * 365;
  const y = (v) => 110 - ((v - lo) / span) * 100;
  // One polyline per run of points that have a value: gaps stay gaps.
  let run = [];
  const flush = () => {
    if (run.length) {
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", run.join(" "));
      svg.appendChild(line);
    }
    run = [];
  };
  for (const p of points) {
    const v = p[name];
    if (v === null || !Number.isFinite(Number(v))) { flush(); continue; }
    const xm = x((p.start + p.end) / 2).toFixed(1);
    const ym = y(Number(v)).toFixed(1);
    run.push(`${xm},${ym}`);
    const dot = document.createElementNS(ns, "circle"); // a lone point shows too
    dot.setAttribute("cx", xm);
    dot.setAttribute("cy", ym);
    dot.setAttribute("r", "1.5");
    svg.appendChild(dot);
  }
  flush();
  for (const [v, yy] of [[hi, 12], [lo, 112]]) {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "2");
    label.setAttribute("y", String(yy));
    label.textContent = Number(v).toPrecision(3);
    svg.appendChild(label);
  }
}

function listMonitors(monitors, selected) {
  const list = $("monitors");
  while (list.firstChild) list.removeChild(list.firstChild);
  for (const monitor of monitors) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    const query = new URLSearchParams(params);
    query.set("monitor", monitor.name);
    link.href = `?${query}`;
    link.textContent = monitor.name;
    link.dataset.monitor = monitor.name;
    if (monitor.name === selected) link.setAttribute("aria-current", "page");
    item.appendChild(link);
    list.appendChild(item);
  }
}

async function refresh() {
  try {
    const { monitors } = await (await api("v1/monitors")).json();
    const wanted = params.get("monitor");
    const monitor = monitors.find((m) => m.name === wanted) || (wanted ? null : monitors[0]);
    listMonitors(monitors, monitor ? monitor.name : null);
    if (!monitor) {
      setStatus(wanted ? `No monitor named ${wanted}.` : "No monitor yet: create one with PUT /v1/monitors/{name}.", Boolean(wanted));
      return;
    }
    const name = encodeURIComponent(monitor.name);
    const win = encodeURIComponent($("window").value);
    const bucket = monitor.bucket_s;
    const step = Math.max(bucket, Math.ceil(seconds(win) / POINTS / bucket) * bucket);
    const [whole, series] = await Promise.all([
      api(`v1/monitors/${name}/metrics?window=${win}`).then((r) => r.json()),
      api(`v1/monitors/${name}/metrics?window=${win}&step=${step}`).then((r) => r.json()),
    ]);
    const heading = $("monitor-name");
    heading.textContent = monitor.name;
    heading.dataset.monitor = monitor.name;
    const range = $("range");
    range.dataset.start = String(whole.start);
    range.dataset.end = String(whole.end);
    range.textContent = `${new Date(whole.start * 1000).toISOString()} – ${new Date(whole.end * 1000).toISOString()}, step ${step} s`;
    showCurrent(whole.points[0]);
    for (const chart of ["cross_entropy", "ece", "accuracy", "n"]) {
      drawChart($(`chart-${chart}`), series.points, chart);
    }
    await showLanguageModel(name, win, step);
    await showReliability(name, win, whole.points[0]);
    setStatus(`Updated ${new Date().toLocaleTimeString()}; refreshing every ${POLL_MS / 1000} s.`);
  } catch (error) {
    if (error instanceof Unauthorized) {
      $("key-form").hidden = false;
      setStatus("Type an API key to read the monitors.", true);
    } else {
      setStatus(`Error: ${error.message}`, true);
    }
  }
}

// The perplexity of the sequences scored by POST …/sequences, shown when the window has any.
async function showLanguageModel(name, win, step) {
  const [whole, series] = await Promise.all([
    api(`v1/monitors/${name}/perplexity?window=${win}`).then((r) => r.json()),
    api(`v1/monitors/${name}/perplexity?window=${win}&step=${step}`).then((r) => r.json()),
  ]);
  const section = $("language-model");
  section.hidden = !whole.total.n_sequences;
  if (section.hidden) return;
  showCurrent(whole.total, LM_METRICS);
  drawChart($("chart-token_perplexity"), series.points, "token_perplexity");
}

async function showReliability(name, win, point) {
  const img = $("reliability-diagram");
  const note = $("reliability-note");
  if (!point || !point.n_labelled) {
    img.hidden = true;
    note.textContent = "No labelled rows in the window.";
    return;
  }
  const svg = await (await api(`v1/monitors/${name}/reliability-diagram?window=${win}`)).blob();
  const previous = reliabilityUrl;
  reliabilityUrl = URL.createObjectURL(svg);
  img.src = reliabilityUrl;
  img.hidden = false;
  note.textContent = "";
  if (previous) URL.revokeObjectURL(previous);
}

document.addEventListener("DOMContentLoaded", () => {
  const win = params.get("window");
  if (win) {
    if (![...$("window").options].some((o) => o.value === win)) $("window").add(new Option(win, win));
    $("window").value = win;
  }
  $("window").addEventListener("change", () => {
    params.set("window", $("window").value);
    history.replaceState(null, "", `?${params}`);
    refresh();
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, $("api-key").value);
    $("api-key").value = "";
    $("key-form").hidden = true;
    refresh();
  });
  refresh();
  setInterval(refresh, POLL_MS);
});
