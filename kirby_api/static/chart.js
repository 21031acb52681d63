"use strict";
// /chart: one starlisting's candles. Subscribes on /ws first, then loads the latest bars
// over REST and applies the live candles that arrived meanwhile, so no update is lost;
// afterwards each live candle replaces the last bar or appends one. Drawn on a canvas.

const params = new URLSearchParams(location.search);
const apiKey = params.get("api_key") || "";
const headers = apiKey ? { "X-API-Key": apiKey } : {};
const UP = "#16a34a";
const DOWN = "#dc2626";

const state = {
  stars: [],
  star: null,
  bars: [],
  limit: 120,
  socket: null,
  retries: 0,
  loading: 0, // generation of the REST load in flight (0: none)
  generation: 0,
  pending: [],
};

async function getJSON(path) {
  const response = await fetch(path, { headers, cache: "no-store" });
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: reported below */ }
  if (!response.ok) throw new Error(body && body.message ? body.message : `HTTP ${response.status}`);
  return body;
}

function candlesPath(star) {
  const parts = [star.exchange, star.coin, star.quote, star.market_type, star.interval];
  return `candles/${parts.map(encodeURIComponent).join("/")}`;
}

function toBar(row) {
  return {
    t: Date.parse(row.time), o: Number(row.open), h: Number(row.high), l: Number(row.low),
    c: Number(row.close), row,
  };
}

/** Replace the bar with the same time, or append a newer one (keeping `limit` bars). */
function upsert(bar) {
  const bars = state.bars;
  const last = bars[bars.length - 1];
  if (!last || bar.t > last.t) {
    bars.push(bar);
    if (bars.length > state.limit) bars.splice(0, bars.length - state.limit);
    return;
  }
  const index = bars.findIndex((b) => b.t === bar.t);
  if (index >= 0) bars[index] = bar;
}

async function reload() {
  const generation = ++state.generation;
  const star = state.star;
  state.loading = generation;
  state.pending = [];
  try {
    const page = await getJSON(`${candlesPath(star)}?limit=${state.limit}`);
    if (generation !== state.generation) return;
    state.bars = page.data.map(toBar);
    state.pending.forEach(upsert);
    showError("");
  } catch (error) {
    if (generation === state.generation) showError(`Could not load ${star.series}: ${error.message}`);
  } finally {
    if (generation === state.generation) {
      state.loading = 0;
      state.pending = [];
      render();
    }
  }
}

function setLive(text) {
  const badge = document.getElementById("live");
  badge.textContent = text;
  badge.className = `badge ${text}`;
}

function send(message) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify(message));
  }
}

function subscribe(previous) {
  if (previous && previous !== state.star.id) {
    send({ action: "unsubscribe", starlisting_ids: [previous] });
  }
  send({ action: "subscribe", starlisting_ids: [state.star.id], channels: ["candles"] });
}

function onMessage(event) {
  const message = JSON.parse(event.data);
  const star = state.star;
  if (message.type === "success" && message.action === "subscribe" && star &&
      message.starlisting_ids.includes(star.id)) {
    setLive("live");
    reload(); // history after the subscription: nothing between the two is lost
  } else if (message.type === "candle" && star && message.starlisting_id === star.id) {
    const bar = toBar(message.data);
    if (state.loading) {
      state.pending.push(bar);
    } else {
      upsert(bar);
      render();
    }
  } else if (message.type === "error") {
    showError(`Live feed: ${message.message}`);
  }
}

function connect() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = "";
  if (apiKey) url.searchParams.set("api_key", apiKey);
  const socket = new WebSocket(url);
  state.socket = socket;
  setLive("connecting");
  socket.onopen = () => {
    state.retries = 0;
    if (state.star) subscribe(null);
  };
  socket.onmessage = onMessage;
  socket.onclose = (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    if (state.star && !state.bars.length && !state.loading) reload(); // history without live
    if (event.code === 4401) {
      setLive("refused");
      showError(`Live feed refused: ${event.reason}. Open this page as /chart?api_key=<key>.`);
      return;
    }
    setLive("reconnecting");
    const delay = Math.min(30000, 1000 * 2 ** state.retries++) * (0.5 + Math.random() / 2);
    setTimeout(connect, delay);
  };
}

function select(star) {
  const previous = state.star ? state.star.id : null;
  state.star = star;
  state.bars = [];
  params.set("series", star.series);
  history.replaceState(null, "", `?${params}`);
  render();
  const socket = state.socket;
  if (socket && socket.readyState === WebSocket.OPEN) subscribe(previous); // reloads on success
  else if (!socket || socket.readyState !== WebSocket.CONNECTING) reload();
}

// --- drawing ---------------------------------------------------------------------------

function niceStep(range, count) {
  const raw = range / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10) * power;
}

function timeLabel(t) {
  const iso = new Date(t).toISOString();
  return state.star && state.star.interval_seconds >= 86400 ? iso.slice(5, 10) : iso.slice(11, 16);
}

function draw() {
  const canvas = document.getElementById("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "12px system-ui, sans-serif";
  const bars = state.bars;
  canvas.dataset.bars = String(bars.length);
  if (!bars.length) {
    ctx.fillStyle = "#5d6b7e";
    ctx.fillText(state.loading ? "loading…" : "no candles yet", 20, height / 2);
    return;
  }
  const pad = { left: 12, right: 80, top: 14, bottom: 26 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  let lo = Math.min(...bars.map((b) => b.l));
  let hi = Math.max(...bars.map((b) => b.h));
  const margin = hi > lo ? (hi - lo) * 0.06 : Math.abs(hi) * 0.01 || 1;
  lo -= margin;
  hi += margin;
  const y = (v) => pad.top + ((hi - v) / (hi - lo)) * plotH;
  const slot = plotW / Math.max(state.limit, bars.length);
  const x = (i) => pad.left + plotW - (bars.length - i - 0.5) * slot;

  const last = bars[bars.length - 1];
  const ly = Math.round(y(last.c)) + 0.5;

  // price grid and labels (none under the last-close tag)
  const step = niceStep(hi - lo, 6);
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  ctx.strokeStyle = "#eef0f3";
  ctx.fillStyle = "#5d6b7e";
  ctx.lineWidth = 1;
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
    const py = Math.round(y(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(pad.left, py);
    ctx.lineTo(pad.left + plotW, py);
    ctx.stroke();
    if (Math.abs(py - ly) > 16) ctx.fillText(v.toFixed(decimals), pad.left + plotW + 8, py + 4);
  }
  // time labels, about every 100 px
  const every = Math.max(1, Math.ceil(100 / slot));
  for (let i = bars.length - 1; i >= 0; i -= every) {
    const label = timeLabel(bars[i].t);
    ctx.fillText(label, x(i) - ctx.measureText(label).width / 2, height - 8);
  }
  // candles
  const body = Math.max(1, Math.min(14, slot * 0.7));
  bars.forEach((b, i) => {
    const color = b.c >= b.o ? UP : DOWN;
    const cx = Math.round(x(i)) + 0.5;
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.beginPath();
    ctx.moveTo(cx, y(b.h));
    ctx.lineTo(cx, y(b.l));
    ctx.stroke();
    const top = y(Math.max(b.o, b.c));
    ctx.fillRect(cx - body / 2, top, body, Math.max(1, y(Math.min(b.o, b.c)) - top));
  });
  // last close
  ctx.setLineDash([4, 4]);
  ctx.strokeStyle = last.c >= last.o ? UP : DOWN;
  ctx.beginPath();
  ctx.moveTo(pad.left, ly);
  ctx.lineTo(pad.left + plotW, ly);
  ctx.stroke();
  ctx.setLineDash([]);
  ctx.fillStyle = ctx.strokeStyle;
  ctx.fillRect(pad.left + plotW + 2, ly - 9, pad.right - 4, 18);
  ctx.fillStyle = "#ffffff";
  ctx.fillText(last.row.close, pad.left + plotW + 6, ly + 4);
}

function render() {
  const last = state.bars[state.bars.length - 1];
  const row = last ? last.row : {};
  fillFacts(document.getElementById("legend"), [
    ["legend-series", "series", state.star ? state.star.series : "—"],
    ["bar-count", "bars", String(state.bars.length)],
    ["last-time", "last bar", last ? formatTime(row.time) : "—"],
    ["last-open", "O", row.open || "—"],
    ["last-high", "H", row.high || "—"],
    ["last-low", "L", row.low || "—"],
    ["last-close", "C", row.close || "—"],
    ["last-volume", "volume", row.volume || "—"],
  ]);
  draw();
}

async function start() {
  document.getElementById("bars").addEventListener("change", (event) => {
    state.limit = Number(event.target.value);
    if (state.star) reload();
  });
  document.getElementById("series").addEventListener("change", (event) => {
    select(state.stars.find((s) => String(s.id) === event.target.value));
  });
  window.addEventListener("resize", draw);
  let page;
  try {
    page = await getJSON("starlistings?active=true");
  } catch (error) {
    showError(`Could not list starlistings: ${error.message}`);
    setLive("refused");
    return;
  }
  state.stars = page.data;
  if (!state.stars.length) {
    showError("No active starlistings: sync a catalog first (kirby catalog sync).");
    return;
  }
  const picker = document.getElementById("series");
  picker.replaceChildren(...state.stars.map((s) => el("option", { value: s.id }, s.series)));
  const wanted = params.get("series");
  const star = state.stars.find((s) => s.series === wanted) ||
    state.stars.find((s) => s.interval === "1m") || state.stars[0];
  picker.value = String(star.id);
  connect();
  select(star);
}

start();
