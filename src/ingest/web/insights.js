// The insights on /admin: charts drawn by the ingest as SVG images, each with its numbers in a table
// (GET /api/admin/v1/insights), for the range the form selects.
"use strict";

function isoDay(moment) {
  return moment.toISOString().slice(0, 10);
}

function insightsQuery() {
  const query = new URLSearchParams({ since: $("in-since").value, until: $("in-until").value });
  if ($("in-by").value) query.set("by", $("in-by").value);
  return query.toString();
}

function chartTable(chart) {
  const table = document.createElement("table");
  const caption = document.createElement("caption");
  caption.textContent = `${chart.title}: the numbers`;
  const head = document.createElement("thead");
  const headRow = document.createElement("tr");
  chart.table.columns.forEach((name) => cell(headRow, name, { header: true }));
  head.appendChild(headRow);
  const body = document.createElement("tbody");
  for (const values of chart.table.rows) {
    const row = document.createElement("tr");
    values.forEach((value, i) => {
      const element = cell(row, value, { header: i === 0, numeric: i > 0 });
      if (i === 0) element.scope = "row";
    });
    body.appendChild(row);
  }
  table.append(caption, head, body);
  return table;
}

function chartFigure(chart, query) {
  const figure = document.createElement("figure");
  figure.id = `chart-${chart.id}`;
  const title = document.createElement("figcaption");
  title.textContent = chart.title;
  const image = document.createElement("img");
  image.dataset.src = `/api/admin/v1/insights/${chart.id}.svg?${query}`;
  image.alt = chart.summary;
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "Numbers";
  summary.setAttribute("aria-label", `${chart.title}: the numbers`);  // one of eight: say whose
  const scroll = document.createElement("div");
  scroll.className = "scroll";
  scroll.appendChild(chartTable(chart));
  details.append(summary, scroll);
  figure.append(title, image, details);
  return figure;
}

function renderRefusals(refusals) {
  const body = document.querySelector("#refusals tbody");
  body.replaceChildren();
  for (const refusal of refusals) {
    const row = document.createElement("tr");
    cell(row, when(refusal.received_at), { className: "when" });
    cell(row, refusal.request_id);
    cell(row, refusal.outcome);
    cell(row, refusal.bytes, { numeric: true });
    cell(row, refusal.reason);
    body.appendChild(row);
  }
  $("refusals-empty").hidden = refusals.length > 0;
}

async function loadInsights() {
  const query = insightsQuery();
  const data = await api("GET", `/api/admin/v1/insights?${query}`);
  const images = [];
  $("insights-charts").replaceChildren(...data.charts.map((chart) => chartFigure(chart, query)));
  for (const image of document.querySelectorAll("#insights-charts img")) {
    // Drawn for the width it is shown at, so its text stays as large as the page's.
    const width = Math.max(280, Math.min(1600, Math.floor(image.getBoundingClientRect().width)));
    image.src = `${image.dataset.src}&width=${width}`;
    images.push(image.decode().catch(() => undefined));
  }
  renderRefusals(data.refusals);
  await Promise.all(images);
  document.body.dataset.insights = `${data.since}..${data.until}/${data.by}`;
}

function lastDays(days) {
  const until = new Date();
  $("in-until").value = isoDay(until);
  $("in-since").value = isoDay(new Date(until.getTime() - (days - 1) * 86400000));
}

async function showInsights(event) {
  if (event) event.preventDefault();
  const inputs = [$("in-since"), $("in-until")];
  for (const input of inputs) input.setAttribute("aria-invalid", input.checkValidity() ? "false" : "true");
  if (inputs.some((input) => !input.checkValidity())) {
    say("Choose the first and the last day of the range.", true);
    return;
  }
  try {
    await loadInsights();
  } catch (error) {
    say(`Could not load the insights: ${error.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  lastDays(30);
  $("insights-form").addEventListener("submit", showInsights);
  for (const button of document.querySelectorAll("#insights-form [data-days]")) {
    button.addEventListener("click", () => {
      lastDays(Number(button.dataset.days));
      showInsights();
    });
  }
  showInsights();
});
