// Genesis dashboard: polls the JSON API with the session cookie; no build step, no framework.
"use strict";

// The API helpers (session cookie, CSRF token, error shape) and el() come from console.js, loaded first.
const {api, el, pager, PAGE} = window.GC;
const pages = {identities: {offset: 0}, unknowns: {offset: 0}, alerts: {offset: 0}};
const POLL_MS = 3000;

// A tile's counters from `/api/cameras/{id}/live` (or the live-updates stream, which sends the same).
function showCounts(tile, live) {
  for (const key of ["in_view", "tracks", "frames", "status"]) {
    if (key === "in_view" && tile.dataset.live === "on") continue;  // the live frame's count is newer
    const node = tile.querySelector(`[data-count="${key}"]`);
    if (node) node.textContent = live[key] ?? "–";
  }
  tile.querySelector('[data-count="identities"]').textContent =
    live.identities.length ? "recognised: " + live.identities.join(", ") : "";
  // While the live view is off, the tile shows the last stored snapshot (reloaded when the run moves on).
  const mark = `${live.run_id}:${live.frames}:${live.status}`;
  if (tile.dataset.live !== "on" && tile.dataset.snapshot !== mark) {
    tile.dataset.snapshot = mark;
    tile.querySelector("img.frame").src =
      `/api/cameras/${encodeURIComponent(tile.dataset.camera)}/frame.jpg?t=${Date.now()}`;
  }
}

async function refreshTiles() {
  for (const tile of document.querySelectorAll(".tile")) {
    const cam = tile.dataset.camera;
    try { showCounts(tile, await api(`/api/cameras/${encodeURIComponent(cam)}/live`)); }
    catch (e) { /* keep the last values */ }
  }
}

async function refreshHealth() {
  const box = document.getElementById("health");
  try {
    const s = await api("/api/pipeline/status");
    const rows = [
      ["database", `${s.database.dialect}, ${s.database.running_runs} run(s) running`],
      ["redis", s.redis.ok ? "ok" : `down: ${s.redis.error}`],
      ["queues", s.queues ? Object.entries(s.queues).map(([q, n]) => `${q} ${n}`).join(" · ") : s.queues_error],
      ["workers", s.workers ? (s.workers.length ? s.workers.map(w => w.name).join(", ") : "none answering")
                            : s.workers_error],
      ["dead letters", s.dlq_size ?? s.dlq_error],
    ];
    box.replaceChildren(...rows.map(([k, v]) => {
      const div = el("div"); div.append(el("dt", {}, k), el("dd", {}, String(v))); return div;
    }));
  } catch (e) {
    box.replaceChildren(el("div", {}, `status unavailable: ${e.message}`));
  }
}

// The alerts feed: the newest alerts (time, camera, kind, message, acknowledged or not), with an
// "acknowledge" button for operators and admins; tiles carry a badge of their open alerts.
function alertTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toISOString().slice(0, 19).replace("T", " ");
}

function alertItem(a) {
  const li = el("li", {class: a.acknowledged ? "alert acked" : "alert open", "data-alert-id": String(a.id),
                       "data-kind": a.kind});
  const head = el("div", {class: "alert-head"});
  head.append(el("span", {class: `kind kind-${a.kind}`}, a.kind), el("span", {class: "camera"}, a.camera_id),
              el("time", {datetime: a.at, class: "muted small"}, alertTime(a.at)));
  li.append(head, el("div", {class: "message"}, a.message));
  const state = el("div", {class: "alert-state small"});
  if (a.acknowledged) {
    state.append(el("span", {class: "ack-state muted"}, `acknowledged ${alertTime(a.acknowledged_at)}`));
  } else {
    state.append(el("span", {class: "ack-state"}, "open"));
    if (window.GENESIS.canOperate) {
      const ack = el("button", {type: "button", class: "link ack"}, "acknowledge");
      ack.addEventListener("click", async () => {
        ack.disabled = true;
        try {
          await api(`/api/alerts/${a.id}/ack`, {method: "POST"});
          await refreshAlerts();
        } catch (e) { ack.disabled = false; window.alert(e.message); }
      });
      state.append(ack);
    }
  }
  li.append(state);
  return li;
}

async function refreshAlerts() {
  const feed = document.getElementById("alerts-feed");
  if (!feed || feed.tagName !== "UL") return;
  try {
    let body = await api(`/api/alerts?limit=${PAGE}&offset=${pages.alerts.offset}`);
    if (!body.items.length && pages.alerts.offset > 0) {
      pages.alerts.offset = 0;
      body = await api(`/api/alerts?limit=${PAGE}&offset=0`);
    }
    pager(document.getElementById("alerts-pager"), pages.alerts, body.total, refreshAlerts);
    document.getElementById("alerts-total").textContent = body.total ? `${body.total} in all` : "";
    if (!body.items.length) { feed.replaceChildren(el("li", {class: "muted"}, "No alerts.")); }
    else { feed.replaceChildren(...body.items.map(alertItem)); }
  } catch (e) {
    feed.replaceChildren(el("li", {class: "error"}, `alerts unavailable: ${e.message}`));
  }
  refreshAlertBadges();
}

async function refreshAlertBadges() {
  for (const tile of document.querySelectorAll(".tile")) {
    const badge = tile.querySelector(".alert-badge");
    if (!badge) continue;
    try {
      const open = await api(`/api/alerts?camera=${encodeURIComponent(tile.dataset.camera)}&acknowledged=false&limit=1`);
      badge.textContent = open.total === 1 ? "1 open alert" : `${open.total} open alerts`;
      badge.hidden = open.total === 0;
    } catch (e) { /* keep the last value */ }
  }
}

function identityRow(ident) {
  const tr = el("tr", {"data-name": ident.name});
  const faces = el("td", {class: "faces"});
  window.GC.identityFaces(faces, ident.name);
  const name = el("td", {class: "name"});
  name.append(window.GC.identityLink(ident.name));
  tr.append(faces, name, el("td", {}, String(ident.photos)),
            el("td", {}, ident.created_at.slice(0, 16).replace("T", " ")));
  const actions = el("td");
  if (window.GENESIS.canOperate) {
    const rename = el("button", {type: "button", class: "link rename"}, "rename");
    rename.addEventListener("click", async () => {
      const name = window.prompt(`New name for ${ident.name}`, ident.name);
      if (!name || name === ident.name) return;
      try {
        await api(`/api/identities/${encodeURIComponent(ident.name)}`, {
          method: "PATCH", headers: {"Content-Type": "application/json"}, body: JSON.stringify({name})});
        await refreshIdentities();
      } catch (e) { window.alert(e.message); }
    });
    actions.append(rename);
  }
  if (window.GENESIS.canAdmin) {
    const forget = el("button", {type: "button", class: "link danger forget"}, "forget");
    forget.addEventListener("click", async () => {
      if (!window.confirm(`Forget ${ident.name} and all their embeddings?`)) return;
      try {
        await api(`/api/identities/${encodeURIComponent(ident.name)}`, {method: "DELETE"});
        await refreshIdentities();
        await refreshUnknowns();
      } catch (e) { window.alert(e.message); }
    });
    actions.append(forget);
  }
  tr.append(actions);
  return tr;
}

async function refreshIdentities() {
  const body = document.getElementById("identity-rows");
  const all = await api("/api/identities");
  if (pages.identities.offset >= all.length) pages.identities.offset = 0;
  const rows = all.slice(pages.identities.offset, pages.identities.offset + PAGE);
  pager(document.getElementById("identities-pager"), pages.identities, all.length, refreshIdentities);
  if (!rows.length) {
    const tr = el("tr", {class: "empty"}); tr.append(el("td", {colspan: "5", class: "muted"}, "No identities enrolled."));
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(...rows.map(identityRow));
}

// The identity library: enrollment shows every rejected photo with its reason, and the warnings
// about borderline photos that were enrolled anyway.
function setupEnroll() {
  const form = document.getElementById("enroll-form");
  if (!form) return;
  const status = document.getElementById("enroll-status");
  const details = document.getElementById("enroll-details");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "enrolling…";
    status.className = "status";
    details.replaceChildren();
    try {
      const r = await api("/api/identities", {method: "POST", body: new FormData(form)});
      status.textContent = `enrolled ${r.name}: ${r.photos} photo(s), ${r.added} new embedding(s)`;
      status.className = "status ok";
      details.replaceChildren(...r.warnings.map(w => el("li", {class: "warning"}, `warning: ${w}`)),
                              ...r.several_faces.map(p => el("li", {class: "warning"},
                                                             `${p}: several faces, the largest was used`)));
      form.reset();
      await refreshIdentities();
    } catch (e) {
      const rejected = Array.isArray(e.details) ? e.details.filter(d => d && d.reason) : [];
      status.textContent = rejected.length ? `enroll failed: nothing was stored (${rejected.length} photo(s) rejected)`
                                           : `enroll failed: ${e.message}`;
      status.className = "status error";
      details.replaceChildren(...rejected.map(d => el("li", {class: "rejected error"}, d.reason)));
    }
  });
}

// Unknown faces: clusters of people nobody enrolled, with a "name" action for operators.
async function nameCluster(u) {
  const name = window.prompt(`Who is ${u.id}? (${u.size} track(s))`, "");
  if (!name || !name.trim()) return;
  const url = `/api/unknowns/${encodeURIComponent(u.id)}/name`;
  const post = (merge) => api(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                    body: JSON.stringify({name: name.trim(), merge})});
  const refresh = () => Promise.all([refreshUnknowns(), refreshIdentities().catch(() => {})]);
  try {
    let done;
    try { done = await post(false); }
    catch (e) {
      if (e.status !== 409 || !e.message.includes("exists already")
        || !window.confirm(`${e.message}\n\nAdd the faces of ${u.id} to ${name.trim()}?`)) throw e;
      done = await post(true);
    }
    window.GC.flash(done, refresh);  // the message, with its Undo
    await refresh();
  } catch (e) { if (e.status !== 409 || !e.message.includes("exists already")) window.alert(e.message); }
}

function unknownRow(u) {
  const tr = el("tr", {"data-cluster": u.id});
  const faces = el("td", {class: "faces"});
  window.GC.clusterStrip(faces, u.id);
  tr.append(faces, el("td", {class: "cluster"}, u.id), el("td", {}, String(u.size)), el("td", {}, u.cameras.join(", ")),
            el("td", {}, alertTime(u.last_seen)));
  const actions = el("td");
  if (window.GENESIS.canOperate) {
    const name = el("button", {type: "button", class: "link name-cluster"}, "name");
    name.addEventListener("click", () => nameCluster(u));
    actions.append(name);
  }
  tr.append(actions);
  return tr;
}

async function refreshUnknowns() {
  const body = document.getElementById("unknown-rows");
  if (!body) return;
  try {
    let page = await api(`/api/unknowns?limit=${PAGE}&offset=${pages.unknowns.offset}`);
    if (!page.items.length && pages.unknowns.offset > 0) {
      pages.unknowns.offset = 0;
      page = await api(`/api/unknowns?limit=${PAGE}&offset=0`);
    }
    pager(document.getElementById("unknowns-pager"), pages.unknowns, page.total, refreshUnknowns);
    document.getElementById("unknowns-total").textContent = page.total ? `${page.total} in all` : "";
    if (!page.items.length) {
      const tr = el("tr", {class: "empty"}); tr.append(el("td", {colspan: "6", class: "muted"}, "No unknown faces."));
      body.replaceChildren(tr);
    } else { body.replaceChildren(...page.items.map(unknownRow)); }
  } catch (e) {
    const tr = el("tr"); tr.append(el("td", {colspan: "6", class: "error"}, `unknown faces unavailable: ${e.message}`));
    body.replaceChildren(tr);
  }
}

function setupHeatmap() {
  const panel = document.getElementById("heatmap-panel");
  const form = document.getElementById("heatmap-form");
  const img = document.getElementById("heatmap-img");
  const error = document.getElementById("heatmap-error");
  let camera = null;
  async function show() {
    const params = new URLSearchParams();
    for (const name of ["since", "until"]) {
      const v = form.elements[name].value;
      if (v) params.set(name, new Date(v).toISOString());
    }
    const url = `/api/cameras/${encodeURIComponent(camera)}/heatmap.png?${params}`;
    const response = await fetch(url, {credentials: "same-origin"});
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
      error.textContent = message; error.hidden = false; img.hidden = true;
      return;
    }
    error.hidden = true; img.hidden = false;
    img.src = URL.createObjectURL(await response.blob());
  }
  bindHeatmap = (button) => {
    button.addEventListener("click", () => {
      camera = button.dataset.camera;
      document.getElementById("heatmap-camera").textContent = camera;
      panel.hidden = false;
      show();
    });
  };
  document.querySelectorAll(".show-heatmap").forEach(bindHeatmap);
  form.addEventListener("submit", (event) => { event.preventDefault(); if (camera) show(); });
}
let bindHeatmap = () => {};

// A camera that appears while the page is open (a run on a new camera) gets its tile at once: the
// server's own tile markup (<template id="tile-template">, the same macro as the rendered tiles),
// filled in with textContent and attributes only, in the tiles' order (by id). A camera that is gone
// loses its tile.
function newTile(cam) {
  const tile = document.getElementById("tile-template").content.firstElementChild.cloneNode(true);
  tile.dataset.camera = cam.id;
  const name = tile.querySelector(".cam-name");
  name.textContent = cam.name;
  if (cam.name !== cam.id) name.after(" ", el("span", {class: "muted cam-id"}, cam.id));
  tile.querySelector("canvas.live").setAttribute("aria-label", `live view of ${cam.id}`);
  const img = tile.querySelector("img.frame");
  img.alt = `last stored snapshot of ${cam.id}`;
  img.src = `/api/cameras/${encodeURIComponent(cam.id)}/frame.jpg`;
  tile.querySelector(".show-heatmap").dataset.camera = cam.id;
  return tile;
}

let syncing = false;

async function syncTiles(states) {
  if (syncing) return;  // the next state event tries again
  syncing = true;
  try { await addTiles(states); } finally { syncing = false; }
}

async function addTiles(states) {
  const box = document.querySelector("#cameras .tiles");
  const shown = new Map([...box.querySelectorAll(".tile")].map(t => [t.dataset.camera, t]));
  let cameras;
  try { cameras = await api("/api/cameras"); } catch (e) { return; }
  const ids = new Set(cameras.map(c => c.id));
  for (const [id, tile] of shown) if (!ids.has(id)) tile.remove();
  for (const cam of cameras) {
    if (shown.has(cam.id)) continue;
    const tile = newTile(cam);
    const after = [...box.querySelectorAll(".tile")].find(t => t.dataset.camera > cam.id);
    box.insertBefore(tile, after || null);
    bindHeatmap(tile.querySelector(".show-heatmap"));
    window.GC.startLive(tile);
    const live = states[cam.id];
    if (live) showCounts(tile, live);
  }
  document.getElementById("no-cameras").hidden = box.querySelector(".tile") !== null;
  refreshAlertBadges();
}

document.addEventListener("DOMContentLoaded", () => {
  setupEnroll();
  setupHeatmap();
  refreshIdentities().catch(() => {});
  refreshUnknowns();
  refreshTiles();
  refreshHealth();
  refreshAlerts();
  setInterval(refreshAlerts, POLL_MS * 2);
  setInterval(refreshHealth, POLL_MS * 2);
  // Lists, tiles and counters follow the server's live updates (server-sent events); without
  // EventSource, the tiles are polled.
  if (window.EventSource) {
    window.GC.liveUpdates((now, before) => {
      for (const tile of document.querySelectorAll(".tile")) {
        const live = (now.cameras || {})[tile.dataset.camera];
        if (live) showCounts(tile, live);
      }
      if (window.GC.listsChanged(now, before)) {
        window.GC.whenIdle(() => { refreshIdentities().catch(() => {}); refreshUnknowns(); });
      }
      const tiles = [...document.querySelectorAll("#cameras .tile")].map(t => t.dataset.camera).sort().join();
      if (Object.keys(now.cameras || {}).sort().join() !== tiles) syncTiles(now.cameras || {});
    });
  } else { setInterval(refreshTiles, POLL_MS); }
});
