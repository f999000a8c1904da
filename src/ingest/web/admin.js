// The ingest's admin page: plain DOM over the admin JSON API, with the helpers of page.js.
// Credentials are the browser's own (Basic auth for this origin), so nothing secret is kept in the page.
"use strict";

const MODEL_COLUMNS = [
  ["model_name", "Model", "text"],
  ["model_source", "Source", "text"],
  ["embedding_dimension", "Dimension", "number"],
  ["distance_metric", "Metric", "text"],
  ["normalization", "Normalization", "text"],
  ["modalities", "Modalities", "text"],
  ["device_type", "Device", "text"],
  ["clients", "Installations", "number"],
  ["events", "Events", "number"],
  ["load_failures", "Load failures", "number"],
  ["inference_failures", "Inference failures", "number"],
  ["first_day", "First seen", "text"],
  ["last_day", "Last seen", "text"],
];
const state = { models: [], sortKey: "clients", descending: true, filter: "" };

function text(value) {
  return (Array.isArray(value) ? value.join(",") : value === null || value === undefined ? "" : String(value)).toLowerCase();
}

function compare(a, b, kind) {
  if (kind === "number") return (a ?? -Infinity) - (b ?? -Infinity);
  return text(a).localeCompare(text(b));
}

function renderModelHeader() {
  const row = document.querySelector("#models thead tr");
  row.replaceChildren();
  for (const [key, label] of MODEL_COLUMNS) {
    const th = document.createElement("th");
    th.scope = "col";
    th.dataset.key = key;
    th.setAttribute("aria-sort", key === state.sortKey ? (state.descending ? "descending" : "ascending") : "none");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.addEventListener("click", () => {
      state.descending = state.sortKey === key ? !state.descending : MODEL_COLUMNS.find((c) => c[0] === key)[2] === "number";
      state.sortKey = key;
      renderModels();
    });
    th.appendChild(button);
    row.appendChild(th);
  }
}

function renderModels() {
  renderModelHeader();
  const kind = MODEL_COLUMNS.find((c) => c[0] === state.sortKey)[2];
  const words = state.filter.toLowerCase().split(/\s+/).filter(Boolean);
  const shown = state.models
    .filter((m) => words.every((w) => MODEL_COLUMNS.some(([key]) => text(m[key]).includes(w))))
    .sort((a, b) => compare(a[state.sortKey], b[state.sortKey], kind) * (state.descending ? -1 : 1));
  const body = document.querySelector("#models tbody");
  body.replaceChildren();
  for (const model of shown) {
    const row = document.createElement("tr");
    for (const [key, , type] of MODEL_COLUMNS) {
      cell(row, model[key], { numeric: type === "number", className: key.endsWith("_day") ? "when" : "" });
    }
    body.appendChild(row);
  }
  $("model-count").textContent = `${shown.length} of ${state.models.length} models`;
  $("models-empty").hidden = state.models.length > 0;
}

async function loadModels() {
  const data = await api("GET", "/api/admin/v1/models");
  state.models = data.models;
  $("telemetry-retention").textContent = data.retention_days;
  renderModels();
}

async function loadUploads() {
  const data = await api("GET", "/api/admin/v1/uploads?limit=50");
  $("upload-retention").textContent = data.retention_days;
  const totals = $("upload-totals");
  totals.replaceChildren();
  for (const [key, label] of [["uploads", "Uploads"], ["bytes", "Bytes"], ["records", "Records"],
    ["new_records", "New records"], ["duplicate_records", "Duplicate records"]]) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.id = `total-${key}`;
    dd.textContent = String(data.totals[key]);
    totals.append(dt, dd);
  }
  const body = document.querySelector("#uploads tbody");
  body.replaceChildren();
  for (const upload of data.uploads) {
    const row = document.createElement("tr");
    cell(row, when(upload.received_at), { className: "when" });
    cell(row, upload.request_id);
    cell(row, upload.service);
    cell(row, upload.category);
    for (const key of ["bytes", "records", "new_records", "duplicate_records"]) cell(row, upload[key], { numeric: true });
    body.appendChild(row);
  }
  $("uploads-empty").hidden = data.uploads.length > 0;
}

async function loadDeletions() {
  const data = await api("GET", "/api/admin/v1/deletions");
  const body = document.querySelector("#deletions tbody");
  body.replaceChildren();
  for (const entry of data.deletions) {
    const row = document.createElement("tr");
    cell(row, when(entry.requested_at), { className: "when" });
    cell(row, entry.via);
    cell(row, entry.contributions, { numeric: true });
    cell(row, entry.events, { numeric: true });
    body.appendChild(row);
  }
}

function askDeletion(event) {
  event.preventDefault();
  const input = $("client-id");
  const valid = input.checkValidity();
  input.setAttribute("aria-invalid", valid ? "false" : "true");
  if (!valid) {
    say("Enter the installation's client id: a UUID such as 0f8fad5b-d9cb-469f-a165-70867728950e.", true);
    input.focus();
    return;
  }
  $("confirm-client").textContent = input.value.trim();
  $("confirm-deletion").showModal();
}

async function confirmDeletion() {
  $("confirm-deletion").close();
  let data;
  try {
    data = await api("POST", "/api/admin/v1/deletions", { client_id: $("client-id").value.trim() });
  } catch (error) {
    say(`Deletion failed: ${error.message}`, true);
    return;
  }
  $("client-id").value = "";
  const done = `Deleted ${data.deleted.contributions} contributions (${data.deleted.events} events).`;
  try {
    await Promise.all([loadModels(), loadDeletions()]);
  } catch (error) {
    say(`${done} Reloading the tables failed: ${error.message}`, true);
    return;
  }
  say(done); // only once the tables show the result
}

async function loadErasures() {
  const data = await api("GET", "/api/admin/v1/erasures");
  const body = document.querySelector("#erasures tbody");
  body.replaceChildren();
  for (const entry of data.erasures) {
    const row = document.createElement("tr");
    cell(row, when(entry.received_at), { className: "when" });
    cell(row, entry.via);
    cell(row, entry.done_at ? when(entry.done_at) : "pending", { className: "when" });
    for (const key of ["records", "archives_rewritten", "archives_removed"]) cell(row, entry[key], { numeric: true });
    body.appendChild(row);
  }
}

function askErasure(event) {
  event.preventDefault();
  const input = $("user-hash");
  input.value = input.value.trim().toLowerCase();
  const valid = input.checkValidity();
  input.setAttribute("aria-invalid", valid ? "false" : "true");
  if (!valid) {
    say("Enter the user's keyed hash: 64 hexadecimal digits.", true);
    input.focus();
    return;
  }
  $("confirm-user").textContent = input.value;
  $("confirm-erasure").showModal();
}

async function confirmErasure() {
  $("confirm-erasure").close();
  let data;
  try {
    data = await api("POST", "/api/admin/v1/erasures", { user_hash: $("user-hash").value });
  } catch (error) {
    say(`Erasure failed: ${error.message}`, true);
    return;
  }
  $("user-hash").value = "";
  const e = data.erased;
  const done = `Erased ${e.records} records (${e.archives_rewritten} archives rewritten, ${e.archives_removed} removed).`;
  try {
    await Promise.all([loadUploads(), loadErasures()]);
  } catch (error) {
    say(`${done} Reloading the tables failed: ${error.message}`, true);
    return;
  }
  say(done);
}

const feedbackState = { next: null };

function feedbackQuery() {
  const params = new URLSearchParams();
  for (const name of ["since", "until", "sentiment", "category", "q"]) {
    const value = document.querySelector(`#feedback-form [name="${name}"]`).value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

async function loadFeedback(more = false) {
  const params = feedbackQuery();
  for (const [kind, id] of [["csv", "fb-csv"], ["jsonl", "fb-jsonl"]]) {
    const link = new URLSearchParams(params);
    link.set("format", kind);
    $(id).href = `/api/admin/v1/feedback?${link}`;
  }
  params.set("limit", "50");
  if (more && feedbackState.next) params.set("after", feedbackState.next);
  const data = await api("GET", `/api/admin/v1/feedback?${params}`);
  const body = document.querySelector("#feedback tbody");
  if (!more) body.replaceChildren();
  for (const entry of data.feedback) {
    const row = document.createElement("tr");
    const record = entry.record;
    cell(row, entry.at ? when(entry.at) : "", { className: "when" });
    cell(row, entry.sentiment === 1 ? "positive" : entry.sentiment === -1 ? "negative" : "");
    cell(row, entry.categories.join(", "));
    cell(row, record.user_feedback ?? "");
    cell(row, record.user_question ?? "");
    const conversation = cell(row, record.conversation_id ?? "");
    if (entry.has_transcript) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Transcript";
      button.setAttribute("aria-label", `Transcript of conversation ${record.conversation_id}`);
      button.addEventListener("click", () => showTranscript(record.conversation_id));
      conversation.append(" ", button);
    }
    body.appendChild(row);
  }
  feedbackState.next = data.next;
  $("feedback-more").hidden = !data.next;
  $("feedback-empty").hidden = body.children.length > 0;
}

async function showTranscript(conversationId) {
  let data;
  try {
    data = await api("GET", `/api/admin/v1/conversations/${encodeURIComponent(conversationId)}/transcripts`);
  } catch (error) {
    say(`Could not load the transcript: ${error.message}`, true);
    return;
  }
  $("transcript-conversation").textContent = conversationId;
  const list = $("transcript-turns");
  list.replaceChildren();
  for (const turn of data.transcripts) {
    const item = document.createElement("li");
    const question = document.createElement("p");
    question.textContent = `Q: ${turn.redacted_query ?? ""}`;
    const answer = document.createElement("p");
    answer.textContent = `A: ${turn.llm_response ?? ""}`;
    item.append(question, answer);
    list.appendChild(item);
  }
  $("transcript-dialog").showModal();
}

async function showFeedback(event) {
  event.preventDefault();
  const category = $("fb-category");
  const valid = category.checkValidity();
  category.setAttribute("aria-invalid", valid ? "false" : "true");
  if (!valid) {
    say("A category is one word of a-z, 0-9 and _, such as incorrect.", true);
    category.focus();
    return;
  }
  try {
    await loadFeedback();
    say(`${document.querySelectorAll("#feedback tbody tr").length} feedback shown.`);
  } catch (error) {
    say(`Could not load the feedback: ${error.message}`, true);
  }
}

async function start() {
  $("model-filter").addEventListener("input", (event) => {
    state.filter = event.target.value;
    renderModels();
  });
  $("deletion-form").addEventListener("submit", askDeletion);
  $("confirm-yes").addEventListener("click", confirmDeletion);
  $("confirm-no").addEventListener("click", () => $("confirm-deletion").close());
  $("erasure-form").addEventListener("submit", askErasure);
  $("feedback-form").addEventListener("submit", showFeedback);
  $("transcript-close").addEventListener("click", () => $("transcript-dialog").close());
  $("feedback-more").addEventListener("click", () => loadFeedback(true).catch((e) => say(e.message, true)));
  $("confirm-erasure-yes").addEventListener("click", confirmErasure);
  $("confirm-erasure-no").addEventListener("click", () => $("confirm-erasure").close());
  try {
    await Promise.all([loadModels(), loadUploads(), loadDeletions(), loadErasures(), loadFeedback()]);
  } catch (error) {
    say(`Could not load: ${error.message}`, true);
  }
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
