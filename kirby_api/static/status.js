"use strict";
// /status: polls status.json every few seconds and redraws the tables.
// Everything from the server goes into the DOM as text (see el() in common.js).

const POLL_MS = 3000;
const days = new URLSearchParams(location.search).get("days"); // /status?days=7
const source = days ? `status.json?days=${encodeURIComponent(days)}` : "status.json";
let lastChecked = null;

function counts(map) {
  const entries = Object.entries(map || {});
  return entries.length ? entries.map(([k, v]) => `${k} ${formatCount(v)}`).join(" · ") : "—";
}

function renderService(status) {
  const db = status.database;
  const dbText = db.status === "ok" ? `ok (${db.latency_ms.toFixed(1)} ms)` : `down: ${db.error || ""}`;
  const ws = status.websocket;
  fillFacts(document.getElementById("service"), [
    ["database", "database", dbText, `badge ${db.status}`],
    ["stream", "stream", status.stream.reason ? `${status.stream.status}: ${status.stream.reason}`
      : status.stream.status, `badge ${status.stream.status}`],
    ["listener", "live listener", ws.listener_connected ? "connected" : "down",
      `badge ${ws.listener_connected ? "ok" : "down"}`],
    ["stale-after", "stale after", formatAge(status.stream.stale_after_seconds)],
  ]);
}

function renderExchanges(exchanges, checkedAt) {
  const rows = exchanges.map((x) => el("tr", { "data-exchange": x.exchange },
    el("td", {}, x.exchange),
    el("td", { class: `state ${x.state}` }, x.last_error ? `${x.state}: ${x.last_error}` : x.state),
    el("td", { class: "num" },
      x.last_message_at ? formatAge((checkedAt - Date.parse(x.last_message_at)) / 1000) : "—"),
    el("td", { class: "num messages" }, formatCount(x.messages_received)),
    el("td", { class: "num" }, formatCount(x.invalid_messages)),
    el("td", { class: "num" }, formatCount(x.channel_errors)),
    el("td", { class: "num" }, formatCount(x.reconnects)),
    el("td", { class: "num" }, formatCount(x.outages)),
    el("td", { class: "num" }, formatCount(x.series)),
    el("td", { class: "num" }, formatCount(x.fresh)),
    el("td", { class: `num ${x.lagging ? "stale" : "ok"}` }, formatCount(x.lagging)),
    el("td", { class: "num" }, formatCount(x.quiet)),
    el("td", { class: "num" }, formatCount(x.empty)),
  ));
  if (!rows.length) {
    rows.push(el("tr", { class: "empty-row" }, el("td", { colspan: 13 }, "No exchange.")));
  }
  document.querySelector("#exchanges tbody").replaceChildren(...rows);
}

const BOOK_COLUMNS = ["exchange", "pair", "minutes", "updates", "gaps", "resyncs", "stale",
  "crossed", "latest sample age"];

function booksTable() {
  // The page's markup predates books: the section is made here once, after Exchanges.
  let table = document.getElementById("books");
  if (table) return table;
  const numeric = (name) => !["exchange", "pair"].includes(name);
  table = el("table", { id: "books" },
    el("thead", {}, el("tr", {}, ...BOOK_COLUMNS.map((name) =>
      el("th", numeric(name) ? { class: "num" } : {}, name)))),
    el("tbody", {}));
  const section = el("section", {},
    el("h2", {}, "Order books (integrity, last hour)"), table);
  document.getElementById("exchanges").closest("section").after(section);
  return table;
}

function renderBooks(books, checkedAt) {
  const rows = (books || []).map((b) => el("tr", { "data-book": b.pair },
    el("td", {}, b.exchange),
    el("td", {}, b.pair),
    el("td", { class: "num" }, formatCount(b.minutes)),
    el("td", { class: "num updates" }, formatCount(b.updates)),
    el("td", { class: `num gaps ${b.gaps ? "stale" : "ok"}` }, formatCount(b.gaps)),
    el("td", { class: "num resyncs" }, formatCount(b.resyncs)),
    el("td", { class: `num ${b.stale_seconds ? "stale" : "ok"}` }, formatAge(b.stale_seconds)),
    el("td", { class: `num ${b.crossed ? "stale" : "ok"}` }, formatCount(b.crossed)),
    el("td", { class: "num" },
      b.latest_sample ? formatAge((checkedAt - Date.parse(b.latest_sample)) / 1000) : "—"),
  ));
  if (!rows.length) {
    rows.push(el("tr", { class: "empty-row" },
      el("td", { colspan: BOOK_COLUMNS.length }, "No order book kept in the last hour.")));
  }
  booksTable().querySelector("tbody").replaceChildren(...rows);
}

function renderCollectors(stream) {
  const rows = stream.collectors.map((c) => el("tr", { "data-collector": c.collector_id },
    el("td", {}, c.collector_id),
    el("td", {}, c.hostname),
    el("td", {}, c.pid),
    el("td", { class: `state ${c.state}` }, c.last_error ? `${c.state}: ${c.last_error}` : c.state),
    el("td", { class: `num ${c.stale ? "stale" : "ok"}` }, formatAge(c.heartbeat_age_seconds)),
    el("td", { class: "num" }, formatAge(c.last_message_age_seconds)),
    el("td", { class: "num messages" }, formatCount(c.messages_received)),
    el("td", { class: "num" }, formatCount(c.invalid_messages)),
    el("td", { class: "num" }, formatCount(c.dropped_rows)),
    el("td", { class: "num" }, formatCount(c.refused_rows)),
    el("td", { class: "num" }, formatCount(c.reconnects)),
    el("td", {}, counts(c.rows_written)),
    el("td", {}, counts(c.buffer_sizes)),
  ));
  if (!rows.length) {
    rows.push(el("tr", { class: "empty-row" },
      el("td", { colspan: 13 }, "No collector has written a heartbeat.")));
  }
  document.querySelector("#collectors tbody").replaceChildren(...rows);
}

function renderClients(ws) {
  fillFacts(document.getElementById("clients"), [
    ["ws-connections", "connections", formatCount(ws.connections)],
    ["ws-keys", "API keys", formatCount(ws.keys)],
    ["ws-subscriptions", "subscriptions", formatCount(ws.subscriptions)],
    ["ws-sent", "messages sent", formatCount(ws.messages_sent)],
    ["ws-dropped", "messages dropped", formatCount(ws.messages_dropped)],
  ]);
}

function renderFreshness(series) {
  const rows = series.map((s) => el("tr", { "data-series": `${s.dataset} ${s.series}` },
    el("td", {}, s.dataset),
    el("td", {}, s.series),
    el("td", { class: "latest" }, formatTime(s.latest_time)),
    el("td", { class: "num" }, formatAge(s.age_seconds)),
    el("td", { class: "num" }, formatAge(s.lag_seconds)),
    el("td", {}, el("span", { class: `badge ${s.state}` }, s.state)),
  ));
  if (!rows.length) {
    rows.push(el("tr", { class: "empty-row" }, el("td", { colspan: 6 }, "No active series.")));
  }
  document.querySelector("#freshness tbody").replaceChildren(...rows);
}

function dayCell(day) {
  const whole = day.completeness === 0 || day.completeness === 1;
  let pct = `${(day.completeness * 100).toFixed(whole ? 0 : 1)}%`;
  let note = null;
  if (day.status === "future") [pct, note] = ["—", "not due yet"];
  else if (day.unavailable_at_source) note = "unavailable at source";
  else if (day.outage_minutes) note = `outage ${formatCount(day.outage_minutes)} min`;
  else if (day.status === "no_trades") note = `${formatCount(day.no_trades)} without trades`;
  else if (day.missing) note = `${formatCount(day.missing)} missing`;
  else if (day.integrity_gap_minutes) {
    note = `${formatCount(day.integrity_gap_minutes)} min with book gaps`;
  }
  const gaps = day.integrity_gap_minutes
    ? `, ${day.integrity_gap_minutes} min with book sequence gaps` : "";
  const title = `${day.date}: ${day.present} of ${day.expected} rows, ${day.status}${gaps}`;
  return el("td", { class: `day ${day.status}`, title }, pct, note && el("small", {}, note));
}

function renderCoverage(coverage) {
  const days = coverage.length ? coverage[0].days.map((d) => d.date) : [];
  document.getElementById("coverage-title").textContent =
    `Coverage, last ${days.length} day${days.length === 1 ? "" : "s"} (UTC)`;
  document.querySelector("#coverage thead").replaceChildren(el("tr", {},
    el("th", {}, "dataset"), el("th", {}, "series"),
    ...days.map((d) => el("th", { class: "num" }, d))));
  const rows = coverage.map((c) => el("tr", { "data-series": `${c.dataset} ${c.series}` },
    el("td", {}, c.dataset), el("td", {}, c.series), ...c.days.map(dayCell)));
  if (!rows.length) {
    rows.push(el("tr", { class: "empty-row" }, el("td", { colspan: 2 }, "No active series.")));
  }
  document.querySelector("#coverage tbody").replaceChildren(...rows);
}

function render(status) {
  const overall = document.getElementById("overall");
  overall.textContent = status.status;
  overall.className = `badge ${status.status}`;
  lastChecked = Date.parse(status.checked_at);
  renderService(status);
  renderExchanges(status.exchanges, lastChecked);
  renderBooks(status.books, lastChecked);
  renderCollectors(status.stream);
  renderClients(status.websocket);
  renderFreshness(status.series);
  renderCoverage(status.coverage);
}

function tick() {
  const updated = document.getElementById("updated");
  updated.textContent = lastChecked === null ? "" :
    `checked ${formatTime(new Date(lastChecked).toISOString())} UTC ` +
    `(${formatAge((Date.now() - lastChecked) / 1000)} ago)`;
}

async function poll() {
  try {
    const response = await fetch(source, { cache: "no-store" });
    const body = await response.json();
    if (!body.checked_at) throw new Error(body.message || `HTTP ${response.status}`);
    render(body);
    showError("");
  } catch (error) {
    showError(`Status unavailable (${error.message}); retrying every ${POLL_MS / 1000} s.`);
  } finally {
    tick();
    setTimeout(poll, POLL_MS);
  }
}

setInterval(tick, 1000);
poll();
