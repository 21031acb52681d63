"use strict";
// Shared by Kirby's pages: DOM building (text only, never HTML) and formatting.

/** An element with attributes and children; strings become text nodes, never markup. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined).map((c) =>
    c instanceof Node ? c : String(c)));
  return node;
}

/** "42 s", "3 min 20 s", "5 h 2 min", "2 d 4 h". */
function formatAge(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function formatCount(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US");
}

/** "2024-05-01 12:34:56" (UTC) from an ISO time. */
function formatTime(iso) {
  if (!iso) return "—";
  return new Date(iso).toISOString().slice(0, 19).replace("T", " ");
}

/** A <dl> of label -> value pairs, each in its own <div> (with an id per value). */
function fillFacts(list, facts) {
  list.replaceChildren(...facts.map(([id, label, value, cls]) =>
    el("div", {}, el("dt", {}, label), el("dd", { id, class: cls }, value))));
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}
