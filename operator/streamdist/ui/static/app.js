// streamdist control room: one card per StreamInput with its StreamOutputs and Events,
// kept live by the server's event stream (/api/stream: a Kubernetes watch per kind).
// The page never polls. Every change is a call the server makes with the viewer's token.

const state = {
  namespace: "",
  session: { user: null, anonymousRead: false },
  kinds: { StreamInput: new Map(), StreamOutput: new Map(), Event: new Map() },
  errors: new Map(), // kind -> message of a refused watch
  source: null,
  rendered: new Map(), // card key -> HTML last written
};

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const key = (ns, name) => `${ns}/${name}`;

// --- colour theme ------------------------------------------------------------------

const THEMES = ["auto", "light", "dark"];
const media = window.matchMedia("(prefers-color-scheme: dark)");

function themePref() {
  try { return localStorage.getItem("streamdist-theme") || "auto"; } catch { return "auto"; }
}

function applyTheme(pref) {
  const dark = pref === "dark" || (pref === "auto" && media.matches);
  document.documentElement.setAttribute("data-bs-theme", dark ? "dark" : "light");
  const button = $("#theme");
  button.textContent = { auto: "Theme: auto", light: "Theme: light", dark: "Theme: dark" }[pref];
  button.setAttribute("aria-label", `Colour theme: ${pref}; press to switch`);
}

function nextTheme() {
  const pref = THEMES[(THEMES.indexOf(themePref()) + 1) % THEMES.length];
  try { localStorage.setItem("streamdist-theme", pref); } catch { /* storage off: this page only */ }
  applyTheme(pref);
}

// --- talking to the server ---------------------------------------------------------

async function send(method, path, body) {
  const init = { method, headers: { "X-Streamdist": "1" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(data.message || `refused (${resp.status})`);
    err.errors = data.errors || {};
    err.status = resp.status;
    throw err;
  }
  return data;
}

function connect() {
  if (state.source) state.source.close();
  for (const map of Object.values(state.kinds)) map.clear();
  state.errors.clear();
  if (!state.session.user && !state.session.anonymousRead) {
    setLive("signed out", "secondary");
    notice("Sign in with a Kubernetes token to see the streams (anonymous reading is off).", "info", "signin");
    render();
    return;
  }
  const source = new EventSource(`/api/stream?namespace=${encodeURIComponent(state.namespace)}`);
  state.source = source;
  source.onopen = () => setLive("live", "success");
  source.onerror = () => setLive(source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting", "warning");
  source.onmessage = (e) => receive(JSON.parse(e.data));
}

function receive(msg) {
  const map = state.kinds[msg.kind];
  if (msg.type === "SYNC") {
    map.clear();
    for (const obj of msg.items) map.set(obj.uid, obj);
    state.errors.delete(msg.kind);
  } else if (msg.type === "ADDED" || msg.type === "MODIFIED") {
    map.set(msg.object.uid, msg.object);
  } else if (msg.type === "DELETED") {
    map.delete(msg.object.uid);
  } else if (msg.type === "ERROR") {
    state.errors.set(msg.kind, msg.message);
  } else if (msg.type === "RETRY") {
    setLive("reconnecting", "warning");
    return;
  } else {
    return;
  }
  if (msg.type !== "ERROR") setLive("live", "success");
  scheduleRender();
}

function setLive(text, tone) {
  const badge = $("#live");
  badge.textContent = text;
  badge.className = `badge text-bg-${tone}`;
}

// --- notices -------------------------------------------------------------------------

function notice(text, tone = "danger", id = "") {
  const box = $("#alerts");
  const same = id ? box.querySelector(`[data-notice="${id}"]`) : null;
  if (same && same.firstElementChild.textContent === text) return;
  same?.remove();
  const div = document.createElement("div");
  div.className = `alert alert-${tone} d-flex align-items-start gap-2`;
  div.setAttribute("role", tone === "danger" ? "alert" : "status");
  if (id) div.dataset.notice = id;
  div.innerHTML = `<div class="flex-grow-1">${esc(text)}</div><button type="button" class="btn-close" aria-label="Dismiss"></button>`;
  div.querySelector("button").addEventListener("click", () => div.remove());
  box.append(div);
}

// --- rendering -----------------------------------------------------------------------

let pending = false;
function scheduleRender() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

const PHASE_TONE = {
  Live: "success", Streaming: "success", Waiting: "warning", Connecting: "info", Pending: "secondary",
  Reconnecting: "warning", Scheduled: "info", Suspended: "secondary", Failed: "danger", Invalid: "danger",
};

function badge(phase) {
  const text = phase || "Unknown";
  return `<span class="badge sd-phase text-bg-${PHASE_TONE[text] || "secondary"}" data-phase="${esc(text)}">${esc(text)}</span>`;
}

// Events about this very object: same kind and name, and its uid (an earlier object of the
// same name, deleted, had Events of its own).
function eventsOf(kind, ns, name, uid) {
  return [...state.kinds.Event.values()]
    .filter((e) => e.object.kind === kind && e.object.name === name && (e.object.namespace || e.namespace) === ns)
    .filter((e) => !uid || !e.object.uid || e.object.uid === uid)
    .sort((a, b) => String(b.time).localeCompare(String(a.time)));
}

function eventsBlock(kind, ns, name, uid) {
  const events = eventsOf(kind, ns, name, uid);
  if (!events.length) return "";
  const rows = events.slice(0, 8).map((e) => {
    const when = e.time ? new Date(e.time).toLocaleTimeString() : "";
    const tone = e.type === "Warning" ? "text-warning-emphasis" : "";
    return `<li><time datetime="${esc(e.time)}">${esc(when)}</time> <strong class="${tone}">${esc(e.reason)}</strong> ${esc(e.message)}${e.count > 1 ? ` (×${esc(e.count)})` : ""}</li>`;
  }).join("");
  return `<details class="small mt-1" data-key="events:${esc(kind)}:${esc(key(ns, name))}"><summary>Events (${events.length})</summary><ul class="list-unstyled mb-0 ms-2">${rows}</ul></details>`;
}

// Conditions that say something is wrong, with their reason: in red when it is known
// (False for Ready-like conditions, True for the abnormal-true ones below), muted when not
// known yet (Unknown). A suspended output's are what suspending means: its phase says it.
const ABNORMAL_TRUE = new Set(["Degraded", "Black", "Frozen", "Silent"]);
function problems(obj) {
  if (obj.suspend) return "";
  const bad = (c) => (ABNORMAL_TRUE.has(c.type) ? "True" : "False");
  return (obj.conditions || [])
    .filter((c) => c.message && (c.status === bad(c) || c.status === "Unknown"))
    .map((c) => `<div class="small ${c.status === bad(c) ? "text-danger-emphasis" : "text-body-secondary"}" data-condition="${esc(c.type)}">${esc(c.type)}: ${esc(c.reason)}: ${esc(c.message)}</div>`)
    .join("");
}

function figures(obj) {
  const f = obj.figures || {};
  const parts = [];
  if (f.bitrateKbps != null) parts.push(`${esc(f.bitrateKbps)} kbit/s`);
  if (f.readers != null) parts.push(`${esc(f.readers)} readers`);
  if (f.rttMs != null) parts.push(`RTT ${esc(f.rttMs)} ms`);
  if (f.lossPercent != null) parts.push(`loss ${esc(f.lossPercent)} %`);
  if (f.droppedFrames != null) parts.push(`${esc(f.droppedFrames)} frames dropped`);
  if (f.speed != null) parts.push(`speed ${esc(f.speed)}×`);
  return parts;
}

function outputItem(o) {
  const k = key(o.namespace, o.name);
  const where = o.secret ? `${o.destination || "from Secret"} (Secret ${o.secret.name})` : o.destination || "";
  const facts = [`${esc(o.reconnects ?? 0)} reconnects`, ...figures(o)];
  if (o.endpoint) facts.push(`receivers connect to <code>${esc(o.endpoint)}</code>`);
  const toggle = o.suspend
    ? `<button type="button" class="btn btn-outline-primary" data-action="resume" data-key="resume:${esc(k)}">Resume</button>`
    : `<button type="button" class="btn btn-outline-secondary" data-action="suspend" data-key="suspend:${esc(k)}">Suspend</button>`;
  return `<li class="list-group-item" data-output="${esc(k)}">
    <div class="d-flex flex-wrap gap-2 align-items-center">
      <strong>${esc(o.name)}</strong> ${badge(o.phase)}
      <span class="small text-body-secondary text-break">${esc(o.protocol || "")} ${esc(where)}</span>
      <div class="btn-group btn-group-sm ms-auto" role="group" aria-label="Actions on output ${esc(o.name)}" data-ns="${esc(o.namespace)}" data-name="${esc(o.name)}">
        ${toggle}
        <button type="button" class="btn btn-outline-danger" data-action="delete" data-key="delete:${esc(k)}">Delete</button>
      </div>
    </div>
    <div class="small text-body-secondary">${facts.join(" · ")}</div>
    ${o.lastError ? `<div class="small text-danger-emphasis text-break">Last error: ${esc(o.lastError)}</div>` : ""}
    ${problems(o)}
    ${eventsBlock("StreamOutput", o.namespace, o.name, o.uid)}
  </li>`;
}

function endpointBlock(label, value) {
  if (!value) return "";
  return `<dt class="col-sm-3">${esc(label)}</dt><dd class="col-sm-9 d-flex gap-2 align-items-start">
    <code class="sd-endpoint">${esc(value)}</code>
    <button type="button" class="btn btn-sm btn-outline-secondary py-0" data-action="copy" data-copy="${esc(value)}" data-key="copy:${esc(label)}:${esc(value)}">Copy</button></dd>`;
}

// The input's latest keyframe, from its confidence monitor through the page's server (which
// checks the viewer may get streaminputs/thumbnail). Pictures, not state: refreshed by a
// timer (THUMB_SECONDS), hidden while there is none.
const THUMB_SECONDS = 10;
function thumbUrl(ns, name) {
  return `/api/namespaces/${encodeURIComponent(ns)}/streaminputs/${encodeURIComponent(name)}/thumbnail.jpg`;
}

function thumbnail(ns, name, inp) {
  if (!state.session.thumbnails || !inp) return "";
  return `<img class="sd-thumb rounded border mb-2" hidden data-thumb="${esc(thumbUrl(ns, name))}" src="${esc(thumbUrl(ns, name))}" alt="Latest keyframe of ${esc(name)}" width="320" height="180">`;
}

function refreshThumbs() {
  for (const img of document.querySelectorAll("img[data-thumb]")) img.src = `${img.dataset.thumb}?t=${Date.now()}`;
}

function inputCard(ns, name, inp, outputs) {
  const k = key(ns, name);
  const head = inp
    ? `${badge(inp.phase)} <span class="small text-body-secondary">${esc(inp.protocol)} · ${esc(ns)}</span>`
    : `<span class="badge text-bg-danger">input not found</span> <span class="small text-body-secondary">${esc(ns)}</span>`;
  const facts = inp ? figures(inp) : [];
  if (inp?.activeSource) facts.push(`on air: ${esc(inp.activeSource)}`);
  const details = inp ? `<dl class="row small mb-2">
      ${endpointBlock("Publish to", inp.endpoint)}${endpointBlock("Backup to", inp.backupEndpoint)}
      <dt class="col-sm-3">Figures</dt><dd class="col-sm-9">${facts.join(" · ") || "–"}</dd>
    </dl>${problems(inp)}${eventsBlock("StreamInput", ns, name, inp.uid)}` : "";
  const list = outputs.length
    ? `<ul class="list-group list-group-flush">${outputs.map(outputItem).join("")}</ul>`
    : `<p class="small text-body-secondary mb-0">No outputs yet.</p>`;
  return `<section class="card h-100" aria-labelledby="in-${esc(k)}" data-input="${esc(k)}">
    <div class="card-header d-flex flex-wrap gap-2 align-items-center">
      <h2 class="h5 mb-0" id="in-${esc(k)}">${esc(name)}</h2> ${head}
      <button type="button" class="btn btn-sm btn-outline-success ms-auto" data-action="add-output" data-ns="${esc(ns)}" data-name="${esc(name)}" data-key="add:${esc(k)}">Add output</button>
    </div>
    <div class="card-body">${thumbnail(ns, name, inp)}${details}
      <h3 class="h6 mt-2">Outputs (${outputs.length})</h3>${list}
    </div>
  </section>`;
}

function groups() {
  const byInput = new Map();
  for (const inp of state.kinds.StreamInput.values()) byInput.set(key(inp.namespace, inp.name), { inp, outputs: [] });
  for (const o of state.kinds.StreamOutput.values()) {
    const k = key(o.namespace, o.input);
    if (!byInput.has(k)) byInput.set(k, { inp: null, outputs: [] });
    byInput.get(k).outputs.push(o);
  }
  for (const g of byInput.values()) g.outputs.sort((a, b) => a.name.localeCompare(b.name));
  return [...byInput.entries()].sort(([a], [b]) => a.localeCompare(b));
}

function render() {
  const root = $("#inputs");
  const focused = document.activeElement?.dataset?.key;
  const open = new Set([...root.querySelectorAll("details[open]")].map((d) => d.dataset.key));
  const seen = new Set();
  for (const [k, g] of groups()) {
    const [ns, name] = k.split("/");
    const html = inputCard(ns, name, g.inp, g.outputs);
    let col = root.querySelector(`:scope > [data-card="${CSS.escape(k)}"]`);
    if (!col) {
      col = document.createElement("div");
      col.className = "col-12 col-xl-6";
      col.dataset.card = k;
    }
    const at = root.children[seen.size] || null;
    if (col !== at) root.insertBefore(col, at); // sorted order; moving only what moved keeps focus
    seen.add(k);
    if (state.rendered.get(k) !== html) {
      col.innerHTML = html;
      state.rendered.set(k, html);
    }
  }
  for (const col of [...root.children]) {
    if (!seen.has(col.dataset.card)) { col.remove(); state.rendered.delete(col.dataset.card); }
  }
  for (const d of root.querySelectorAll("details")) if (open.has(d.dataset.key)) d.open = true;
  if (focused && document.activeElement === document.body) root.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
  const reading = state.session.user || state.session.anonymousRead;
  $("#empty").hidden = !reading || seen.size > 0 || state.errors.size > 0;
  renderErrors();
  $("#input-names").innerHTML = [...state.kinds.StreamInput.values()].map((i) => `<option value="${esc(i.name)}">`).join("");
}

function renderErrors() {
  for (const [kind, message] of state.errors) {
    const hint = state.namespace ? "" : " Type a namespace you may read above and press Show.";
    notice(`Cannot show ${kind} objects: ${message}.${hint}`, "warning", `watch-${kind}`);
  }
}

// --- forms ---------------------------------------------------------------------------

function clearErrors(form) {
  for (const el of form.querySelectorAll(".is-invalid")) el.classList.remove("is-invalid");
  const general = form.querySelector("[data-general]");
  general.classList.add("d-none");
  general.textContent = "";
}

function showErrors(form, message, errors) {
  clearErrors(form);
  const leftover = [];
  for (const [path, text] of Object.entries(errors || {})) {
    const field = [...form.querySelectorAll("[data-path]")].find((el) => el.dataset.path.split(" ").includes(path) && !el.closest("[hidden]"));
    if (!field) { leftover.push(path ? `${path}: ${text}` : text); continue; }
    field.classList.add("is-invalid");
    const fb = field.parentElement.querySelector(".invalid-feedback");
    if (fb) fb.textContent = text;
  }
  if (leftover.length || !Object.keys(errors || {}).length) {
    const general = form.querySelector("[data-general]");
    general.textContent = leftover.length ? leftover.join("; ") : message;
    general.classList.remove("d-none");
  }
  (form.querySelector(".is-invalid") || form.querySelector("[data-general]")).focus?.();
}

function values(form) {
  const data = Object.fromEntries(new FormData(form).entries());
  for (const [k, v] of Object.entries(data)) if (typeof v === "string") data[k] = v.trim();
  return data;
}

function openDialog(id, fill = {}) {
  const dialog = $(id);
  const form = dialog.querySelector("form");
  form.reset();
  clearErrors(form);
  for (const [name, value] of Object.entries(fill)) if (form.elements[name]) form.elements[name].value = value;
  showDestination(form);
  dialog.showModal();
  (form.querySelector("input:not([value]):not([type=radio])") || form.querySelector("input"))?.focus();
}

function showDestination(form) {
  const choice = form.elements.destination?.value;
  for (const el of form.querySelectorAll("[data-when]")) el.hidden = el.dataset.when !== choice;
}

async function submitOutput(form) {
  const data = values(form);
  const ns = data.namespace;
  if (!ns) return showErrors(form, "", { "metadata.namespace": "choose the namespace of the input" });
  const started = performance.now();
  try {
    await send("POST", `/api/namespaces/${encodeURIComponent(ns)}/streamoutputs`, data);
  } catch (err) {
    return showErrors(form, err.message, err.errors);
  }
  form.closest("dialog").close();
  form.reset(); // the URL typed (a stream key, perhaps) does not stay in the page
  window.streamdistLastAdd = { name: data.name, namespace: ns, at: started };
  notice(`Output ${data.name} created; it appears below and goes live by itself.`, "success", "added");
}

async function submitInput(form) {
  const data = values(form);
  if (!data.namespace) return showErrors(form, "", { "metadata.namespace": "choose a namespace" });
  try {
    await send("POST", `/api/namespaces/${encodeURIComponent(data.namespace)}/streaminputs`, data);
  } catch (err) {
    return showErrors(form, err.message, err.errors);
  }
  form.closest("dialog").close();
  form.reset();
  notice(`Input ${data.name} created.`, "success", "added");
}

async function submitSignin(form) {
  try {
    const got = await send("POST", "/api/session", { token: values(form).token });
    state.session.user = got.user;
  } catch (err) {
    return showErrors(form, err.message, err.errors);
  }
  form.closest("dialog").close();
  form.reset();
  $("#alerts").querySelector('[data-notice="signin"]')?.remove();
  showUser();
  connect();
}

let deleting = null;
async function submitDelete(form) {
  try {
    await send("DELETE", `/api/namespaces/${encodeURIComponent(deleting.ns)}/streamoutputs/${encodeURIComponent(deleting.name)}`);
  } catch (err) {
    return showErrors(form, err.message, err.errors);
  }
  form.closest("dialog").close();
}

// --- actions on cards ------------------------------------------------------------------

async function act(button) {
  const action = button.dataset.action;
  const group = button.closest("[data-ns]");
  const ns = group?.dataset.ns, name = group?.dataset.name;
  if (action === "copy") return copy(button);
  if (action === "add-output") return openDialog("#output-dialog", { namespace: ns, input: name });
  if (action === "delete") {
    deleting = { ns, name };
    $("#delete-dialog [data-name]").textContent = name;
    return openDialog("#delete-dialog");
  }
  button.disabled = true;
  try {
    await send("PATCH", `/api/namespaces/${encodeURIComponent(ns)}/streamoutputs/${encodeURIComponent(name)}`, { suspend: action === "suspend" });
  } catch (err) {
    notice(`${action === "suspend" ? "Suspend" : "Resume"} ${name}: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

async function copy(button) {
  const text = button.dataset.copy;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

// --- session ---------------------------------------------------------------------------

function showUser() {
  const user = state.session.user;
  $("#user").textContent = user ? `signed in as ${user}` : state.session.anonymousRead ? "read-only (not signed in)" : "";
  $("#signin").hidden = Boolean(user);
  $("#signout").hidden = !user || state.session.viaHeader;
}

async function signOut() {
  await send("DELETE", "/api/session").catch(() => {});
  state.session.user = null;
  showUser();
  connect();
}

function readNamespace() {
  return new URLSearchParams(location.search).get("namespace") ?? state.session.namespace ?? "";
}

function setNamespace(ns) {
  state.namespace = ns.trim();
  const url = new URL(location.href);
  if (state.namespace) url.searchParams.set("namespace", state.namespace); else url.searchParams.delete("namespace");
  history.replaceState(null, "", url);
  $("#ns").value = state.namespace;
  for (const el of $("#alerts").querySelectorAll('[data-notice^="watch-"]')) el.remove();
  connect();
}

// --- wiring ------------------------------------------------------------------------------

function wire() {
  $("#theme").addEventListener("click", nextTheme);
  media.addEventListener("change", () => applyTheme(themePref()));
  $("#signin").addEventListener("click", () => openDialog("#signin-dialog"));
  $("#signout").addEventListener("click", signOut);
  $("#ns-form").addEventListener("submit", (e) => { e.preventDefault(); setNamespace($("#ns").value); });
  $("#add-output").addEventListener("click", () => openDialog("#output-dialog", { namespace: state.namespace }));
  $("#add-input").addEventListener("click", () => openDialog("#input-dialog", { namespace: state.namespace }));
  $("#inputs").addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action]");
    if (button) act(button);
  });
  const submit = { output: submitOutput, input: submitInput, signin: submitSignin, delete: submitDelete };
  for (const form of document.querySelectorAll("form[data-form]")) {
    form.addEventListener("submit", (e) => { e.preventDefault(); submit[form.dataset.form]?.(form); });
    form.addEventListener("change", () => showDestination(form));
  }
  for (const b of document.querySelectorAll("[data-close]")) b.addEventListener("click", () => b.closest("dialog").close());
  // load and error do not bubble: caught on the way down, for every thumbnail present or to come
  $("#inputs").addEventListener("load", (e) => { if (e.target.dataset?.thumb) e.target.hidden = false; }, true);
  $("#inputs").addEventListener("error", (e) => { if (e.target.dataset?.thumb) e.target.hidden = true; }, true);
  setInterval(refreshThumbs, THUMB_SECONDS * 1000);
}

async function start() {
  applyTheme(themePref());
  wire();
  try {
    const resp = await fetch("/api/session", { credentials: "same-origin" });
    state.session = await resp.json();
  } catch {
    notice("The page's server does not answer.");
  }
  showUser();
  setNamespace(readNamespace());
}

start();
