// vbp-live live view: the MJPEG stream in an <img>, the numbers from /state.json and /events (SSE).
"use strict";
const token = new URLSearchParams(location.search).get("token");
const q = token ? "?token=" + encodeURIComponent(token) : "";
const TIMELINE_S = 20, MAX_ROWS = 3000;
const rows = [];
let lastN = 0;

function side(v) { return v > 0 ? " L" : v < 0 ? " R" : ""; }
function angle(v) { return v == null ? "–" : Math.abs(v).toFixed(1) + "°" + side(v); }
function signed(v) { return v == null ? "–" : (v >= 0 ? "+" : "−") + Math.abs(v).toFixed(1) + "°"; }
function fmt(v, d) { return v == null ? "–" : Number(v).toFixed(d); }

function setNum(id, v, show) {
  const el = document.getElementById(id);
  el.textContent = show(v);
  el.dataset.deg = v == null ? "" : String(v);
}

const STATS = [
  ["frames", "frames shown", 0], ["fps", "frames / s (last 30)", 1], ["skipped", "skipped (stale or unreadable)", 0],
  ["latency_p50_ms", "latency p50 (ms)", 1], ["latency_p95_ms", "latency p95 (ms)", 1],
  ["frames_with_truth", "frames with actual angle", 0], ["rmse_deg", "RMSE (°)", 2], ["mae_deg", "mean |error| (°)", 2],
  ["max_abs_error_deg", "max |error| (°)", 2], ["elapsed_s", "elapsed (s)", 1],
];

// the pipeline's own statistics, once the run has ended
const FINAL = [
  ["frames_in", "frames read", 0], ["frames_out", "frames written", 0], ["dropped", "dropped (stale)", 0],
  ["corrupt", "skipped (unreadable)", 0], ["reconnects", "reconnects", 0], ["fps", "fps end to end", 1],
  ["model_fps", "fps of the model step", 1],
];

function row(label, text, id) {
  const tr = document.createElement("tr");
  const a = document.createElement("td"), b = document.createElement("td");
  a.textContent = label; b.textContent = text; b.id = id;
  tr.append(a, b);
  return tr;
}

function showStats(st, final) {
  const rows = STATS.map(([key, label, d]) => row(label, fmt(st[key], d), "stat-" + key));
  if (final) rows.push(...FINAL.map(([key, label, d]) => row(label, fmt(final[key], d), "final-" + key)));
  document.getElementById("stats").replaceChildren(...rows);
}

function apply(snap) {
  for (const r of snap.rows) if (r.n > lastN) { rows.push(r); lastN = r.n; }
  if (rows.length > MAX_ROWS) rows.splice(0, rows.length - MAX_ROWS);
  document.getElementById("source").textContent = snap.source;
  document.getElementById("status").textContent = snap.status;
  const l = snap.latest;
  if (l) {
    document.getElementById("index").textContent = l.index;
    document.getElementById("time").textContent = l.time_s.toFixed(2);
    setNum("pred", l.pred_deg, angle);
    setNum("true", l.true_deg, angle);
    setNum("error", l.error_deg, signed);
  }
  showStats(snap.stats, snap.final);
  drawTimeline();
}

function drawTimeline() {
  const c = document.getElementById("timeline"), g = c.getContext("2d");
  const W = c.width, H = c.height;
  g.clearRect(0, 0, W, H);
  if (!rows.length) return;
  const t1 = rows[rows.length - 1].time_s, t0 = t1 - TIMELINE_S;
  const shown = rows.filter(r => r.time_s >= t0);
  let m = 5;
  for (const r of shown) m = Math.max(m, Math.abs(r.pred_deg), Math.abs(r.true_deg ?? 0));
  const x = t => (t - t0) / TIMELINE_S * W, y = v => H / 2 - v / (m * 1.1) * (H / 2);
  g.strokeStyle = "#444"; g.beginPath(); g.moveTo(0, H / 2); g.lineTo(W, H / 2); g.stroke();
  const truth = shown.filter(r => r.true_deg != null);
  if (truth.length > 1) {  // error shaded between the two curves
    g.fillStyle = "rgba(255,90,90,0.35)"; g.beginPath();
    truth.forEach((r, i) => i ? g.lineTo(x(r.time_s), y(r.true_deg)) : g.moveTo(x(r.time_s), y(r.true_deg)));
    for (let i = truth.length - 1; i >= 0; i--) g.lineTo(x(truth[i].time_s), y(truth[i].pred_deg));
    g.closePath(); g.fill();
  }
  const line = (pts, key, color) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    pts.forEach((r, i) => i ? g.lineTo(x(r.time_s), y(r[key])) : g.moveTo(x(r.time_s), y(r[key])));
    g.stroke();
  };
  line(truth, "true_deg", "#3cdc3c");
  line(shown, "pred_deg", "#00c8ff");
  g.fillStyle = "#999"; g.fillText("+" + (m * 1.1).toFixed(0) + "° L", 4, 12); g.fillText("−" + (m * 1.1).toFixed(0) + "° R", 4, H - 4);
}

document.getElementById("window").textContent = TIMELINE_S;
// after "load": a stream that has no frame yet must not hold the page's load event
window.addEventListener("load", () => { document.getElementById("live").src = "stream.mjpg" + q; });
fetch("state.json" + q).then(r => r.json()).then(snap => {
  apply(snap);
  const es = new EventSource("events" + q);
  es.onmessage = e => apply(JSON.parse(e.data));
  es.onerror = () => { document.getElementById("status").textContent += " (disconnected)"; es.close(); };
});
