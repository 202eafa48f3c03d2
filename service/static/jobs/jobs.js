// The jobs page: an organization's jobs with live progress, their errors and warnings, the failed-rows
// download and cancel. Plain DOM, no framework, no build step. Every value from the API is put on the page
// with textContent, never as HTML: row values are user data. The key lives in sessionStorage (this tab).
"use strict";

const KEY_ITEM = "stockyard-api-key";
const PAGE = 50;
const ISSUE_PAGE = 100;
const REFRESH_MS = 2000;

const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem(KEY_ITEM), jobs: [], cursor: null, selected: null, timer: null };

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { "x-api-key": state.key, ...(options.headers || {}) } });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  return response;
}

function say(text, kind = "error") {
  const message = $("message");
  message.textContent = text;
  message.className = kind;
  message.hidden = !text;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function count(n) { return n === null || n === undefined ? "" : Number(n).toLocaleString("en-US"); }
function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }
function isOpen(job) { return job.status === "PENDING" || job.status === "PROCESSING"; }

function progressOf(job) {
  const bar = document.createElement("progress");
  bar.max = Math.max(job.rowCount, 1);
  bar.value = job.status === "COMPLETED" || job.status === "FAILED" ? bar.max : job.processedCount;
  bar.title = `${count(job.processedCount)} of ${count(job.rowCount)} rows`;
  return bar;
}

function statusBadge(job) {
  const badge = document.createElement("span");
  badge.className = `status status-${job.status}`;
  badge.textContent = job.dryRun ? `${job.status} (dry run)` : job.status;
  return badge;
}

async function loadFilters() {
  try {
    const doc = await (await fetch("/schema/openapi.json")).json();
    const kinds = Object.keys(doc.paths)
      .map((path) => /^\/api\/import\/([a-z-]+)$/.exec(path))
      .filter((match) => match && doc.paths[match[0]].post)
      .map((match) => match[1]);
    const statuses = (doc.components.schemas.JobStatus || {}).enum || [];
    for (const [select, values] of [[$("filter-type"), kinds], [$("filter-status"), statuses]]) {
      for (const value of values) select.add(new Option(value, value));
    }
  } catch (_) { /* the filters stay "any" */ }
}

function query() {
  const params = new URLSearchParams({ limit: String(PAGE) });
  if ($("filter-type").value) params.set("type", $("filter-type").value);
  if ($("filter-status").value) params.set("status", $("filter-status").value);
  return params;
}

async function loadJobs() {
  const shown = Math.max(state.jobs.length, PAGE);
  const params = query();
  params.set("limit", String(Math.min(shown, 200)));
  const page = await (await api(`/api/import/jobs?${params}`)).json();
  state.jobs = page.items;
  state.cursor = page.nextCursor;
  renderJobs();
}

async function loadOlder() {
  const params = query();
  params.set("cursor", state.cursor);
  const page = await (await api(`/api/import/jobs?${params}`)).json();
  state.jobs = state.jobs.concat(page.items);
  state.cursor = page.nextCursor;
  renderJobs();
}

function renderJobs() {
  const body = $("job-rows");
  body.replaceChildren();
  for (const job of state.jobs) {
    const row = body.insertRow();
    row.dataset.jobId = job.jobId;
    if (job.jobId === state.selected) row.className = "selected";
    cell(row, job.jobId, "id");
    cell(row, job.type);
    row.insertCell().append(statusBadge(job));
    row.insertCell().append(progressOf(job));
    cell(row, count(job.rowCount), "num");
    cell(row, count(job.failedCount), "num");
    cell(row, when(job.createdAt));
    row.addEventListener("click", () => select(job.jobId));
  }
  $("no-jobs").hidden = state.jobs.length > 0;
  $("more").hidden = !state.cursor;
  $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

const issues = { errors: { offset: 0 }, warnings: { offset: 0 } };

async function loadIssues(kind, more) {
  const entry = issues[kind];
  if (!more) entry.offset = 0;
  const page = await (await api(`/api/import/status/${state.selected}/${kind}?offset=${entry.offset}&limit=${ISSUE_PAGE}`)).json();
  const body = $(kind).tBodies[0];
  if (!more) body.replaceChildren();
  for (const issue of page.items) {
    const row = body.insertRow();
    for (const value of [issue.row, issue.field, issue.code, issue.message, issue.value]) cell(row, value);
  }
  entry.offset += page.items.length;
  $(`${kind}-total`).textContent = `(${count(page.total)})`;
  $(`${kind}-more`).hidden = entry.offset >= page.total;
}

function renderDetail(job) {
  $("detail-title").textContent = `${job.type} job ${job.jobId}`;
  const bar = $("detail-progress");
  bar.max = Math.max(job.rowCount, 1);
  bar.value = isOpen(job) ? job.processedCount : bar.max;
  let rate = "";
  if (job.status === "PROCESSING" && job.startedAt) {
    const seconds = (Date.now() - new Date(job.startedAt).getTime()) / 1000;
    if (seconds > 0) rate = `${count(Math.round(job.processedCount / seconds))} rows/s`;
  }
  $("detail-rate").textContent = `${count(job.processedCount)} of ${count(job.rowCount)} rows processed ${rate}`;
  const fields = [
    ["Status", job.dryRun ? `${job.status} (dry run)` : job.status],
    ["Rows", count(job.rowCount)], ["Processed", count(job.processedCount)], ["Failed", count(job.failedCount)],
    ["Accepted", when(job.createdAt)], ["Started", when(job.startedAt)], ["Ended", when(job.completedAt)],
  ];
  if (job.dryRun) {
    fields.push(["Would insert", count(job.wouldInsert)], ["Would update", count(job.wouldUpdate)],
      ["Would leave unchanged", count(job.wouldLeaveUnchanged)]);
  }
  const list = $("detail-fields");
  list.replaceChildren();
  for (const [name, value] of fields) {
    const term = document.createElement("dt");
    term.textContent = name;
    const description = document.createElement("dd");
    description.textContent = value;
    list.append(term, description);
  }
  $("cancel").hidden = !isOpen(job);
  $("download-box").hidden = !(job.status === "COMPLETED" && job.failedCount > 0);
}

async function refreshDetail() {
  const job = await (await api(`/api/import/status/${state.selected}`)).json();
  const wasOpen = state.detailOpen;
  state.detailOpen = isOpen(job);
  renderDetail(job);
  if (wasOpen !== false || state.detailOpen) {  // counts change while it runs: reload the first pages
    await loadIssues("errors", false);
    await loadIssues("warnings", false);
  }
}

async function select(jobId) {
  state.selected = jobId;
  state.detailOpen = undefined;
  $("detail").hidden = false;
  renderJobs();
  try { await refreshDetail(); } catch (error) { say(error.message); }
}

async function download() {
  const format = $("download-format").value;
  const response = await api(`/api/import/status/${state.selected}/failed-rows${format ? `?format=${format}` : ""}`);
  const disposition = response.headers.get("content-disposition") || "";
  const name = (/filename="([^"]+)"/.exec(disposition) || [])[1] || `${state.selected}.failed`;
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

async function cancelSelected() {
  if (!confirm(`Cancel job ${state.selected}? Nothing of it will be applied.`)) return;
  const job = await (await api(`/api/import/status/${state.selected}/cancel`, { method: "POST" })).json();
  renderDetail(job);
  await loadJobs();
}

async function tick() {
  try {
    await loadJobs();
    if (state.selected && state.detailOpen !== false) await refreshDetail();
    say("");
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      stop();
      say(`${error.message}: paste a key with the import:read scope.`);
      return;
    }
    say(error instanceof ApiError ? error.message : `The service did not answer (${error.message}); retrying.`);
  }
  state.timer = setTimeout(tick, REFRESH_MS);
}

function stop() { clearTimeout(state.timer); state.timer = null; }

function start() {
  stop();
  $("jobs").hidden = false;
  $("forget").hidden = false;
  tick();
}

function guard(action) {
  return async () => { try { await action(); } catch (error) { say(error.message); } };
}

document.addEventListener("DOMContentLoaded", () => {
  loadFilters();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem(KEY_ITEM, state.key);
    $("key").value = "";
    state.jobs = [];
    start();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    state.key = null;
    stop();
    state.jobs = [];
    state.selected = null;
    $("jobs").hidden = $("detail").hidden = $("forget").hidden = true;
    say("");
  });
  for (const id of ["filter-type", "filter-status"]) {
    $(id).addEventListener("change", () => { state.jobs = []; start(); });
  }
  $("more").addEventListener("click", guard(loadOlder));
  $("errors-more").addEventListener("click", guard(() => loadIssues("errors", true)));
  $("warnings-more").addEventListener("click", guard(() => loadIssues("warnings", true)));
  $("download").addEventListener("click", guard(download));
  $("cancel").addEventListener("click", guard(cancelSelected));
  $("close").addEventListener("click", () => { state.selected = null; $("detail").hidden = true; renderJobs(); });
  if (state.key) start();
});
