// The settings page: plain DOM over the JSON API, with the helpers of page.js. Credentials are the
// browser's own (Basic auth for this origin), so nothing secret is kept in the page.
"use strict";

function fill(list, items) {
  list.replaceChildren(...items.map((item) => {
    const li = document.createElement("li");
    li.textContent = item;
    return li;
  }));
}

let consent = null;
let telemetry = null;
let promptOpen = false;

async function loadTelemetry() {
  telemetry = await api("GET", "/v1/telemetry");
  const toggle = $("telemetry-enabled");
  toggle.checked = telemetry.enabled;
  toggle.disabled = telemetry.do_not_track || !telemetry.registry_url;
  $("dnt-notice").hidden = !telemetry.do_not_track;
  $("telemetry-state").textContent = telemetry.enabled
    ? `Enabled since ${when(telemetry.consented_at)}.`
    : `Disabled: ${telemetry.disabled_reason}.`;
  $("client-id").textContent = telemetry.client_id || "none (made when telemetry is first enabled)";
  $("registry-url").textContent = telemetry.registry_url || "not configured";
  $("next-send").textContent = when(telemetry.sender.next_send_at);
  const last = telemetry.sender.last_result;
  $("last-send").textContent = last
    ? `${last.result} at ${when(last.finished_at)}: ${last.accepted} accepted, ${last.rejected} rejected, ${last.remaining} left`
      + (last.error ? ` (${last.error})` : "")
    : "never";
  const queued = telemetry.queue.events;
  $("purge-offer").hidden = telemetry.enabled || queued === 0;
  $("purge-count").textContent = queued;
  $("send-now").disabled = !telemetry.enabled;
  $("request-deletion").disabled = !telemetry.client_id || !telemetry.registry_url;
  $("deletion-client").textContent = telemetry.client_id || "";
  $("deletion-registry").textContent = telemetry.registry_url || "";
}

async function loadQueue() {
  const queue = await api("GET", "/v1/telemetry/queue");
  const columns = $("queue-columns");
  columns.replaceChildren();
  queue.fields.forEach((name) => { cell(columns, label(name), { header: true }).dataset.field = name; });
  cell(columns, "Will be sent", { header: true }).dataset.field = "will_send";
  const rows = $("queue-rows");
  rows.replaceChildren(...queue.events.map(({ event, will_send }) => {
    const row = document.createElement("tr");
    queue.fields.forEach((name) => {
      const value = name === "timestamp" ? when(event[name]) : event[name];
      cell(row, value, { className: name === "timestamp" ? "when" : "" }).dataset.field = name;
    });
    cell(row, will_send ? "yes" : "no (dated before consent)");
    return row;
  }));
  $("queue-table").hidden = queue.events.length === 0;
  $("queue-summary").textContent = queue.events.length
    ? `${count(queue.events.length, "event")} queued (${queue.bytes} bytes).`
    : "No events queued.";
  $("purge").disabled = queue.events.length === 0;
  $("purge-dialog-count").textContent = queue.events.length;
}

function sendMessage(outcome) {
  const tally = `${outcome.accepted} accepted, ${outcome.rejected} rejected, ${outcome.remaining} left.`;
  const why = outcome.error ? ` ${outcome.error}` : "";
  switch (outcome.result) {
    case "sending": return "Sending in the background.";
    case "sent": return `Sent ${count(outcome.sent, "event")}: ${tally}${why}`;
    case "nothing_to_send": return "Nothing to send.";
    case "failed": return `Sending failed: ${tally}${why}`;
    case "deferred": return `Sending deferred: the registry asked to wait.${why}`;
    default: return `Not sent (${outcome.result}).${why}`;
  }
}

async function loadConsent() {
  consent = await api("GET", "/v1/telemetry/consent");
  $("consent-purpose").textContent = consent.purpose;
  $("consent-registry").textContent = consent.registry_url || "(no registry configured)";
  $("consent-fields").replaceChildren(...consent.fields.map((field) => {
    const row = document.createElement("tr");
    cell(row, field.name);
    cell(row, field.type);
    cell(row, field.description);
    return row;
  }));
  fill($("consent-never"), consent.never_sent);
  fill($("privacy-fields"), consent.fields.map((f) => `${f.name}: ${f.description}`));
  fill($("privacy-never"), consent.never_sent);
}

async function loadModels() {
  const listing = await api("GET", "/v1/embedding-models");
  $("active-model").textContent = listing.active;
  const activation = listing.activation;
  $("activation-state").textContent = activation && activation.state !== "done"
    ? `(activation of ${activation.model_name}: ${activation.state}${activation.error ? `, ${activation.error}` : ""})`
    : "";
  $("models-rows").replaceChildren(...listing.models.map((model) => {
    const row = document.createElement("tr");
    row.dataset.model = model.model_name;
    cell(row, model.model_name);
    cell(row, model.model_source);
    cell(row, model.status === "failed" ? `failed: ${model.error.reason}` : model.status);
    for (const key of ["embedding_dimension", "normalization", "distance_metric", "modalities", "device_type", "model_version"]) {
      cell(row, model[key]);
    }
    cell(row, model.active ? "active" : "");
    const actions = cell(row, "");
    if (!model.active && model.status === "ready") {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Activate";
      button.setAttribute("aria-label", `Activate ${model.model_name}`);
      button.addEventListener("click", () => activate(model.model_name));
      actions.appendChild(button);
    }
    return row;
  }));
  if (activation && activation.state === "building") setTimeout(() => loadModels().catch(report), 500);
}

async function loadFeedback() {
  const status = await api("GET", "/v1/feedback/status");
  $("feedback-enabled").checked = status.status.enabled;
}

function report(error) {
  say(error.status === 401 ? "Sign in with an admin API key to use this page." : error.message, true);
}

async function refresh() {
  await Promise.all([loadTelemetry(), loadQueue(), loadModels(), loadFeedback(), loadConsent()]);
}

async function activate(name) {
  await api("PUT", "/v1/embedding-models/active", { model_name: name });
  say(`Activating ${name}: the index is rebuilt in the background.`);
  await loadModels();
}

function wire() {
  const toggle = $("telemetry-enabled");
  toggle.addEventListener("change", async () => {
    if (toggle.checked) {
      toggle.checked = false; // only the consent dialog turns it on
      await loadConsent();
      $("consent-dialog").showModal();
      return;
    }
    const status = await api("PUT", "/v1/telemetry", { enabled: false });
    say(`Telemetry disabled. ${status.queue.events} queued events were kept; purge them to delete them.`);
    await refresh();
  });
  $("telemetry-prompt-review").addEventListener("click", async () => {
    await loadConsent();
    promptOpen = true;
    $("consent-dialog").showModal();
  });
  $("consent-dialog").addEventListener("close", async () => {
    const fromPrompt = promptOpen;
    promptOpen = false;
    $("telemetry-prompt").hidden = true;
    if ($("consent-dialog").returnValue !== "accept") {
      if (fromPrompt) {
        await api("PUT", "/v1/telemetry", { enabled: false }); // remember the answer: ask only once
        say("Telemetry stays off. You can turn it on here at any time.");
        await refresh();
      }
      return;
    }
    await api("PUT", "/v1/telemetry", { enabled: true, consent_version: consent.version });
    say("Telemetry enabled.");
    await refresh();
  });
  $("send-now").addEventListener("click", async () => {
    say("Sending...");
    const outcome = await api("POST", "/v1/telemetry/send?wait=10");
    say(sendMessage(outcome), outcome.result === "failed");
    await refresh();
  });
  $("purge").addEventListener("click", () => $("purge-dialog").showModal());
  $("purge-dialog").addEventListener("close", async () => {
    if ($("purge-dialog").returnValue !== "accept") return;
    const result = await api("DELETE", "/v1/telemetry/queue");
    say(`Purged ${result.purged} queued events.`);
    await refresh();
  });
  $("request-deletion").addEventListener("click", () => $("deletion-dialog").showModal());
  $("deletion-dialog").addEventListener("close", async () => {
    if ($("deletion-dialog").returnValue !== "accept") return;
    try {
      const result = await api("POST", "/v1/telemetry/deletion-request");
      const deleted = result.registry.deleted || {};
      say(`The registry deleted ${deleted.contributions ?? "?"} contributions (${deleted.events ?? "?"} events).`);
    } catch (error) {
      say(`Deletion request failed: ${error.message}`, true);
    }
  });
  $("model-source").addEventListener("change", () => {
    $("local-path").disabled = $("model-source").value !== "local_path";
  });
  $("register-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      model_name: $("model-name").value.trim(),
      model_source: $("model-source").value,
      activate: $("model-activate").checked,
    };
    if (body.model_source === "local_path") body.local_path = $("local-path").value.trim();
    say(`Registering ${body.model_name}...`);
    $("register").disabled = true;
    try {
      const result = await api("POST", "/v1/embedding-models", body);
      const model = result.model;
      let text = `Registered ${model.model_name}: ${model.embedding_dimension} dimensions, normalization ${model.normalization}.`;
      text += result.telemetry.queued ? " A telemetry event was queued." : "";
      say(text);
      // Ask once, the first time a model is saved, if nobody has decided yet.
      $("telemetry-prompt").hidden = !result.telemetry.ask;
    } catch (error) {
      report(error);
    } finally {
      $("register").disabled = false;
      await refresh();
    }
  });
  $("feedback-enabled").addEventListener("change", async () => {
    const enabled = $("feedback-enabled").checked;
    await api("PUT", "/v1/feedback/status", { status: enabled });
    say(`Storing feedback is ${enabled ? "on" : "off"}.`);
  });
}

window.addEventListener("unhandledrejection", (event) => report(event.reason));
document.addEventListener("DOMContentLoaded", () => {
  wire();
  refresh().then(() => document.body.dataset.ready = "true").catch(report);
});
