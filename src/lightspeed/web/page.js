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

function say(text, isError = false) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "error" : "ok";
}

// Append a table cell showing `value` ("-" when missing, lists joined); `header` makes a column
// header, `numeric` right-aligns it.
function cell(row, value, { header = false, numeric = false } = {}) {
  const element = document.createElement(header ? "th" : "td");
  if (header) element.scope = "col";
  if (numeric) element.className = "number";
  element.textContent = value === null || value === undefined ? "-" : Array.isArray(value) ? value.join(", ") : String(value);
  row.appendChild(element);
  return element;
}
