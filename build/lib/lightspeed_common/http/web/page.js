// What /settings and the ingest's /admin share: plain DOM helpers over a JSON API. Loaded before
// each page's own script; credentials are the browser's own (Basic auth for this origin).
"use strict";

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const text = await response.text();
  const data = text ? JSON.parse(text) : {};
  if (!response.ok) {
    const detail = data.detail;
    let reason = response.statusText;
    if (Array.isArray(detail)) reason = detail.map((d) => d.msg).join("; ");
    else if (detail && detail.cause) reason = `${detail.response}: ${detail.cause}`;
    const error = new Error(reason);
    error.status = response.status;
    error.data = data;
    throw error;
  }
  return data;
}

// "2026-11-30T21:10:57.123456+00:00" -> "2026-11-30 21:10:57 UTC": to the second, one zone, no "T".
function when(iso) {
  if (!iso) return "-";
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return String(iso);
  return `${moment.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

// count(1, "event") -> "1 event"; count(3, "event") -> "3 events".
function count(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

// A field name as a column header: "model_name" -> "Model name".
function label(name) {
  const words = name.replaceAll("_", " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function say(text, isError = false) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "error" : "ok";
}

// Append a table cell showing `value` ("-" when missing, lists joined); `header` makes a column
// header, `numeric` right-aligns it.
function cell(row, value, { header = false, numeric = false, className = "" } = {}) {
  const element = document.createElement(header ? "th" : "td");
  if (header) element.scope = "col";
  element.className = [numeric ? "number" : "", className].filter(Boolean).join(" ");
  element.textContent = value === null || value === undefined ? "-" : Array.isArray(value) ? value.join(", ") : String(value);
  row.appendChild(element);
  return element;
}
