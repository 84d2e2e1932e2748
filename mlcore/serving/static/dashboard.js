// The planners' dashboard: one store's recent actuals and forecast (with its interval), its
// similar stores' forecasts overlaid, a run date switch and a CSV of what is shown.
// Plain browser JavaScript, no build step and nothing loaded from the internet.
"use strict";

const state = { store: null, item: null, itemMode: false, itemsOf: null, runDate: "", history: null, forecast: null, similar: null, overlays: {} };
const COLORS = ["#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"];
const $ = (id) => document.getElementById(id);

function headers() {
  const token = sessionStorage.getItem("mlcoreToken");
  const out = { "Accept": "application/json" };
  if (token) out["Authorization"] = "Bearer " + token;
  return out;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ headers: headers() }, options || {}));
  if (response.status === 401) {
    $("token-form").hidden = false;
    throw new Error("this service needs an access token");
  }
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.className = isError ? "error" : "muted";
}

async function loadCatalog() {
  const catalog = await api("/stores");
  // a store x item lake (forecasting.group_keys [store, item]): a series is a store and an item
  state.itemMode = (catalog.series_keys || []).length > 1;
  $("item-label").hidden = !state.itemMode;
  $("store-list").replaceChildren(...catalog.stores.map((id) => new Option(String(id))));
  const runs = $("run-select");
  runs.replaceChildren(...catalog.run_dates.map((d, i) => new Option(i === 0 ? d + " (latest)" : d, i === 0 ? "" : d)));
  setStatus(catalog.stores.length + " stores, " + catalog.run_dates.length + " forecast run(s). Choose a store.");
  const wanted = new URLSearchParams(location.search).get("store");
  if (wanted) { $("store-input").value = wanted; await show(); }
}

function itemQuery(prefix) {
  return state.itemMode ? prefix + "item=" + state.item : "";
}

function forecastPath(store) {
  const run = $("run-select").value;
  const query = [run ? "run_date=" + encodeURIComponent(run) : "", itemQuery("")].filter(Boolean).join("&");
  return "/stores/" + store + "/forecast" + (query ? "?" + query : "");
}

async function chooseItem(store) {
  // the store's items, fetched when the store changes; keeps the chosen item when it has it
  if (state.itemsOf !== store) {
    const items = (await api("/stores/" + store + "/items")).items;
    const wanted = Number($("item-select").value);
    $("item-select").replaceChildren(...items.map((id) => new Option(String(id))));
    if (items.includes(wanted)) $("item-select").value = String(wanted);
    state.itemsOf = store;
  }
  state.item = Number($("item-select").value);
}

function seriesName(store) {
  return "Store " + store + (state.itemMode ? " item " + state.item : "");
}

async function show() {
  const raw = $("store-input").value.trim();
  if (!/^\d{1,10}$/.test(raw)) { setStatus("A store id is a whole number, e.g. 1.", true); return; }
  const store = Number(raw);
  setStatus("Loading store " + store + "…");
  try {
    if (state.itemMode) await chooseItem(store);
    const weeks = $("weeks-select").value;
    const [history, forecast, similar] = await Promise.all([
      api("/stores/" + store + "/history?weeks=" + weeks + itemQuery("&")),
      api(forecastPath(store)),
      api("/stores/" + store + "/similar?k=5").catch((err) => ({ neighbours: [], error: err.message })),
    ]);
    Object.assign(state, { store, history, forecast, similar, overlays: {} });
    renderSimilar();
    const first = similar.neighbours.slice(0, 3).map((n) => n.store);
    // a similar store without this series (store x item lakes) leaves the chart without overlays
    await loadOverlays(first).catch((err) => { similar.error = err.message; render(); });
    window.history.replaceState(null, "", location.pathname + "?store=" + store);
    setStatus(seriesName(store) + ": " + forecast.points.length + " forecast days, " + history.points.length + " days of actuals" +
      (similar.error ? " (similar stores: " + similar.error + ")" : "") + ".");
    $("download-csv").disabled = false;
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function loadOverlays(stores) {
  state.overlays = {};
  if (stores.length) {
    const body = { stores, run_date: $("run-select").value || null,
                   start: state.forecast.start, end: state.forecast.end };
    if (state.itemMode) body.item = state.item;  // the same item at the similar stores
    const result = await api("/forecasts/query", { method: "POST", headers: Object.assign(headers(), { "Content-Type": "application/json" }), body: JSON.stringify(body) });
    result.forecasts.forEach((f) => { state.overlays[f.store] = f; });
  }
  document.querySelectorAll("#similar-table input").forEach((box) => { box.checked = Number(box.value) in state.overlays; });
  render();
}

function renderSimilar() {
  const rows = state.similar.neighbours.map((n) => {
    const tr = document.createElement("tr");
    tr.dataset.store = n.store;
    const box = Object.assign(document.createElement("input"), { type: "checkbox", value: n.store });
    box.addEventListener("change", () => {
      const chosen = [...document.querySelectorAll("#similar-table input:checked")].map((b) => Number(b.value));
      loadOverlays(chosen).catch((err) => setStatus(err.message, true));
    });
    const cells = [box, String(n.store), n.similarity.toFixed(3), (n.level_ratio * 100).toFixed(0) + " %"];
    cells.forEach((c) => { const td = document.createElement("td"); td.append(c); tr.append(td); });
    return tr;
  });
  $("similar-table").tBodies[0].replaceChildren(...rows);
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
  return node;
}

function render() {
  const chart = $("chart");
  const W = 960, H = 380, L = 60, R = 10, T = 10, B = 30;
  const actual = state.history.points.map((p) => [Date.parse(p.date), p.sales]);
  const fc = state.forecast.points;
  const overlaySeries = Object.values(state.overlays).map((f) => f.points.map((p) => [Date.parse(p.date), p.yhat]));
  const xs = actual.map((p) => p[0]).concat(fc.map((p) => Date.parse(p.date)));
  const ys = actual.map((p) => p[1]).concat(fc.map((p) => p.yhat_upper), ...overlaySeries.map((s) => s.map((p) => p[1])));
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y1 = Math.max(1, ...ys) * 1.05;
  const X = (t) => L + (W - L - R) * (t - x0) / Math.max(1, x1 - x0);
  const Y = (v) => T + (H - T - B) * (1 - v / y1);
  const line = (points) => points.map((p, i) => (i ? "L" : "M") + X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join("");
  const nodes = [];
  for (let i = 0; i <= 4; i++) {
    const v = y1 * i / 4;
    nodes.push(svg("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), stroke: "#eceff4" }));
    const label = svg("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6475" });
    label.textContent = Math.round(v).toLocaleString();
    nodes.push(label);
  }
  const days = Math.max(1, (x1 - x0) / 86400000);
  const stepDays = days > 120 ? 28 : days > 60 ? 14 : 7;
  for (let t = x0; t <= x1; t += stepDays * 86400000) {
    const label = svg("text", { x: X(t), y: H - 10, "text-anchor": "middle", "font-size": 11, fill: "#5b6475" });
    label.textContent = new Date(t).toISOString().slice(5, 10);
    nodes.push(label);
  }
  if (fc.length) {
    const upper = fc.map((p) => [Date.parse(p.date), p.yhat_upper]);
    const lower = fc.map((p) => [Date.parse(p.date), p.yhat_lower]).reverse();
    nodes.push(svg("path", { id: "forecast-band", d: line(upper) + line(lower).replace(/^M/, "L") + "Z", fill: "#1b9e77", "fill-opacity": 0.18, stroke: "none" }));
    nodes.push(svg("line", { x1: X(Date.parse(fc[0].date)), x2: X(Date.parse(fc[0].date)), y1: T, y2: H - B, stroke: "#9aa3b2", "stroke-dasharray": "3 3" }));
  }
  nodes.push(svg("path", { id: "actual-line", d: line(actual), fill: "none", stroke: "#1d2433", "stroke-width": 1.4 }));
  nodes.push(svg("path", { id: "forecast-line", d: line(fc.map((p) => [Date.parse(p.date), p.yhat])), fill: "none", stroke: "#1b9e77", "stroke-width": 2 }));
  overlaySeries.forEach((points, i) => {
    nodes.push(svg("path", { class: "overlay-line", d: line(points), fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.2, "stroke-dasharray": "5 3" }));
  });
  fc.filter((p) => !p.open).forEach((p) => {
    nodes.push(svg("circle", { class: "closed-day", cx: X(Date.parse(p.date)), cy: Y(0), r: 3, fill: "#b00020" }));
  });
  chart.replaceChildren(...nodes);
  const legend = [["#1d2433", "actuals"], ["#1b9e77", "forecast (band: interval)"], ["#b00020", "closed"]]
    .concat(Object.keys(state.overlays).map((s, i) => [COLORS[i % COLORS.length], "store " + s]));
  $("legend").replaceChildren(...legend.map(([color, text]) => {
    const span = document.createElement("span");
    const sw = document.createElement("span");
    sw.className = "swatch"; sw.style.background = color;
    span.append(sw, text);
    return span;
  }));
  const f = state.forecast;
  $("chart-title").textContent = seriesName(state.store) + ": forecast run " + f.run_date;
  const model = f.model ? f.model.name + " v" + f.model.version + " (trained as of " + f.model.trained_run_date + ")" : "";
  const onDemand = f.on_demand ? "; " + f.on_demand.days + " day(s) forecast on demand by champion v" + f.on_demand.model_version : "";
  $("forecast-meta").textContent = f.start + " … " + f.end + " · " + model + onDemand;
  const v = f.versions;
  $("versions").textContent = "forecasts v" + v.forecasts + " · sales v" + v.sales + " · neighbours v" + v.store_neighbours + " · champion v" + v.champion;
}

function csvCell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

function downloadCsv() {
  const rows = [["store", "series", "date", "value", "lower", "upper", "model_type", "source", "open", "run_date"]];
  state.history.points.forEach((p) => rows.push([state.store, "actual", p.date, p.sales, "", "", "", "sales", p.open, ""]));
  const add = (store, series, f) => f.points.forEach((p) =>
    rows.push([store, series, p.date, p.yhat, p.yhat_lower, p.yhat_upper, p.model_type, p.source, p.open, f.run_date]));
  add(state.store, "forecast", state.forecast);
  Object.entries(state.overlays).forEach(([store, f]) => add(store, "similar store forecast", f));
  const text = rows.map((r) => r.map(csvCell).join(",")).join("\n") + "\n";
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  link.download = "store_" + state.store + itemQuery("_").replace("=", "_") + "_forecast_" + state.forecast.run_date + ".csv";
  document.body.append(link);
  link.click();
  link.remove();
}

document.addEventListener("DOMContentLoaded", () => {
  $("controls").addEventListener("submit", (e) => { e.preventDefault(); show(); });
  $("run-select").addEventListener("change", () => { if (state.store !== null) show(); });
  $("item-select").addEventListener("change", () => { if (state.store !== null) show(); });
  $("download-csv").addEventListener("click", downloadCsv);
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("mlcoreToken", $("token-input").value);
    $("token-input").value = "";
    $("token-form").hidden = true;
    loadCatalog().catch((err) => setStatus(err.message, true));
  });
  loadCatalog().catch((err) => setStatus(err.message, true));
});
