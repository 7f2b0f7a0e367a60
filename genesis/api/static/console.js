// Genesis operator's console: live view (frames + boxes drawn here, on a canvas), faces, review,
// identity page, search by photo. Names and other user text only ever go through textContent or
// canvas fillText, never innerHTML. No build step, no framework.
"use strict";

const GC = (() => {
  // Every change carries the session's CSRF token (base.html puts it in <meta name="csrf-token">).
  const CSRF_TOKEN = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const HEADERS = {"X-CSRF-Token": CSRF_TOKEN};
  const LIVE_MS = 500;

  async function api(path, options = {}) {
    const response = await fetch(path, {credentials: "same-origin", ...options,
                                        headers: {...HEADERS, ...(options.headers || {})}});
    if (response.status === 401) { window.location.href = "/"; throw new Error("session ended"); }
    if (!response.ok) {
      let message = response.statusText, details = null;
      try { const err = (await response.json()).error; message = err.message; details = err.details; }
      catch (e) { /* not JSON */ }
      const error = new Error(message);
      error.status = response.status;
      error.details = details;
      throw error;
    }
    return response.status === 204 ? null : response.json();
  }

  function post(path, body) {
    return api(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  }

  function el(tag, attrs = {}, text = "") {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  }

  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toISOString().slice(0, 19).replace("T", " ");
  }

  // A face crop, or a grey placeholder when none was kept.
  function face(url, alt, cls = "face") {
    if (!url) return el("span", {class: `${cls} noface`, title: "no face kept"}, "?");
    return el("img", {class: cls, src: url, alt, loading: "lazy"});
  }

  function identityLink(name) {
    return el("a", {href: `/identities/${encodeURIComponent(name)}`, class: "identity-link"}, name);
  }

  // -- live view ---------------------------------------------------------------------------------

  function drawFrame(canvas, img, frame) {
    const ctx = canvas.getContext("2d");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    ctx.drawImage(img, 0, 0);
    const sx = canvas.width / frame.width, sy = canvas.height / frame.height;
    ctx.lineWidth = Math.max(2, canvas.width / 320);
    ctx.font = `${Math.max(12, Math.round(canvas.width / 48))}px system-ui, sans-serif`;
    ctx.textBaseline = "bottom";
    for (const p of frame.persons) {
      const [x1, y1, x2, y2] = p.box;
      const colour = p.identity ? "#2ecc71" : "#f5b041";
      ctx.strokeStyle = colour;
      ctx.strokeRect(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
      const label = `#${p.track_id} ${p.identity || ""}`.trim();
      const w = ctx.measureText(label).width + 6;
      const h = parseInt(ctx.font, 10) + 4;
      const top = Math.max(h, y1 * sy);
      ctx.fillStyle = colour;
      ctx.fillRect(x1 * sx, top - h, w, h);
      ctx.fillStyle = "#111";
      ctx.fillText(label, x1 * sx + 3, top - 1);
    }
  }

  function startLive(tile) {
    const cam = tile.dataset.camera;
    const canvas = tile.querySelector("canvas.live");
    const still = tile.querySelector("img.frame");
    const status = tile.querySelector(".live-status");
    if (!canvas) return;
    async function tick() {
      if (document.visibilityState === "visible") {
        try {
          const live = await api(`/api/cameras/${encodeURIComponent(cam)}/live/frame`);
          if (live.image && live.frame) {
            const img = new Image();
            await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = live.image; });
            drawFrame(canvas, img, live.frame);
            canvas.hidden = false;
            if (still) still.hidden = true;
            canvas.dataset.seq = String(live.frame.seq);
            canvas.dataset.persons = String(live.frame.persons.length);
            tile.dataset.live = "on";
            status.textContent = `live · frame ${live.frame.seq} · ${live.frame.persons.length} in view`;
            status.className = "live-status small live-on";
          } else {
            canvas.hidden = true;
            if (still) still.hidden = false;
            tile.dataset.live = "off";
            status.textContent = live.available ? `no frame since ${when(live.at)} UTC` : "no live frame yet";
            status.className = "live-status small live-off";
          }
        } catch (e) { status.textContent = `live view unavailable: ${e.message}`; }
      }
      window.setTimeout(tick, LIVE_MS);
    }
    tick();
  }

  // -- faces on the dashboard ----------------------------------------------------------------------

  async function clusterStrip(cell, cluster) {
    try {
      const page = await api(`/api/unknowns/${encodeURIComponent(cluster)}/faces?limit=7`);
      const [best, ...others] = page.items;
      cell.replaceChildren(face(best && best.face, `best face of ${cluster}`, "face best"));
      const strip = el("span", {class: "strip"});
      for (const f of others) strip.append(face(f.face, `a face of ${cluster}`, "face small"));
      cell.append(strip);
    } catch (e) { cell.textContent = "–"; }
  }

  async function identityFaces(cell, name) {
    try {
      const photos = await api(`/api/identities/${encodeURIComponent(name)}/photos`);
      cell.replaceChildren(...photos.slice(0, 4).map(p => face(p.face, `${name}: ${p.photo}`, "face small")));
    } catch (e) { cell.textContent = ""; }
  }

  // -- review ------------------------------------------------------------------------------------

  async function identityNames() {
    const rows = await api("/api/identities");
    const list = document.getElementById("identity-names");
    if (list) list.replaceChildren(...rows.map(r => el("option", {value: r.name})));
    return rows.map(r => r.name);
  }

  function actionBar(item, after) {
    const bar = el("div", {class: "actions"});
    if (!window.GENESIS.canOperate) return bar;
    const input = el("input", {list: "identity-names", placeholder: "name", maxlength: "128", class: "assign-name"});
    const assign = el("button", {type: "button", class: "assign"}, "assign");
    const create = el("button", {type: "button", class: "create"}, "new identity");
    const say = el("span", {class: "small action-status", role: "status"});
    const run = async (fn) => {
      try { await fn(); await after(); }
      catch (e) { say.textContent = e.message; say.className = "small action-status error"; }
    };
    assign.addEventListener("click", () => run(() => {
      if (!input.value.trim()) throw new Error("type the name of an enrolled identity");
      return post(`/api/tracks/${encodeURIComponent(item.run_id)}/${item.track_id}/assign`,
                  {name: input.value.trim(), create: false});
    }));
    create.addEventListener("click", () => run(() => {
      if (!input.value.trim()) throw new Error("type the new identity's name");
      return post(`/api/tracks/${encodeURIComponent(item.run_id)}/${item.track_id}/assign`,
                  {name: input.value.trim(), create: true});
    }));
    bar.append(input, assign, create);
    if (item.identity) {
      const reject = el("button", {type: "button", class: "danger reject"}, "not this person");
      reject.addEventListener("click", () => run(() =>
        post(`/api/tracks/${encodeURIComponent(item.run_id)}/${item.track_id}/reject`, {identity: item.identity})));
      bar.append(reject);
    }
    bar.append(say);
    return bar;
  }

  function faceCard(item, after) {
    const card = el("article", {class: "face-card", "data-run": item.run_id, "data-track": String(item.track_id)});
    card.append(face(item.face, `face of track ${item.track_id}`, "face big"));
    const info = el("div", {class: "info"});
    const who = el("div", {class: "who"});
    if (item.identity) who.append(identityLink(item.identity));
    else who.append(el("span", {class: "muted"}, item.unknown || "unrecognised"));
    if (item.reason) who.append(el("span", {class: `reason small ${item.reason === "low margin" ? "warn" : ""}`},
                                   ` · ${item.reason}`));
    info.append(who,
                el("div", {class: "small muted"}, `${item.camera_id} · ${when(item.seen_at)} · track ${item.track_id}`),
                el("div", {class: "small muted"},
                   item.distance == null ? "" : `distance ${Number(item.distance).toFixed(3)}`));
    card.append(info, actionBar(item, after));
    return card;
  }

  async function refreshReview() {
    const box = document.getElementById("review-faces");
    const total = document.getElementById("review-total");
    try {
      const page = await api("/api/review?limit=60");
      total.textContent = `${page.total} to review (threshold ${page.threshold}, margin ${page.margin})`;
      if (!page.items.length) box.replaceChildren(el("p", {class: "muted"}, "Nothing to review."));
      else box.replaceChildren(...page.items.map(i => faceCard(i, refreshAllReview)));
    } catch (e) { box.replaceChildren(el("p", {class: "error"}, `review unavailable: ${e.message}`)); }
  }

  function clusterCard(u, clusters) {
    const card = el("article", {class: "cluster-card", "data-cluster": u.id});
    const faces = el("div", {class: "cluster-faces"});
    clusterStrip(faces, u.id);
    const head = el("div", {class: "who"}, u.id);
    const info = el("div", {class: "small muted"},
                    `${u.size} track(s) · ${u.cameras.join(", ")} · last seen ${when(u.last_seen)}`);
    card.append(faces, head, info);
    if (window.GENESIS.canOperate) {
      const bar = el("div", {class: "actions"});
      const input = el("input", {list: "identity-names", placeholder: "name", maxlength: "128", class: "cluster-name"});
      const name = el("button", {type: "button", class: "name-cluster"}, "name");
      const say = el("span", {class: "small action-status", role: "status"});
      name.addEventListener("click", async () => {
        const who = input.value.trim();
        if (!who) { say.textContent = "type a name"; return; }
        try {
          const known = await identityNames();
          await post(`/api/unknowns/${encodeURIComponent(u.id)}/name`, {name: who, merge: known.includes(who)});
          await refreshAllReview();
        } catch (e) { say.textContent = e.message; say.className = "small action-status error"; }
      });
      bar.append(input, name);
      const others = clusters.filter(c => c.id !== u.id && c.model === u.model);
      if (others.length) {
        const select = el("select", {class: "merge-into"});
        select.append(...others.map(c => el("option", {value: c.id}, c.id)));
        const merge = el("button", {type: "button", class: "merge"}, "merge into");
        merge.addEventListener("click", async () => {
          try {
            await post(`/api/unknowns/${encodeURIComponent(u.id)}/merge`, {into: select.value});
            await refreshAllReview();
          } catch (e) { say.textContent = e.message; say.className = "small action-status error"; }
        });
        bar.append(merge, select);
      }
      bar.append(say);
      card.append(bar);
    }
    return card;
  }

  async function refreshClusters() {
    const box = document.getElementById("review-clusters");
    try {
      const page = await api("/api/unknowns?limit=100");
      document.getElementById("clusters-total").textContent = page.total ? `${page.total} in all` : "";
      if (!page.items.length) box.replaceChildren(el("p", {class: "muted"}, "No unknown faces."));
      else box.replaceChildren(...page.items.map(u => clusterCard(u, page.items)));
    } catch (e) { box.replaceChildren(el("p", {class: "error"}, `unknown faces unavailable: ${e.message}`)); }
  }

  async function refreshAllReview() {
    await Promise.all([identityNames().catch(() => {}), refreshReview(), refreshClusters()]);
  }

  // -- identity page -----------------------------------------------------------------------------

  function dl(box, rows) {
    box.replaceChildren(...rows.map(([k, v]) => {
      const div = el("div"); div.append(el("dt", {}, k), el("dd", {}, String(v))); return div;
    }));
  }

  async function loadIdentity(name) {
    const s = await api(`/api/identities/${encodeURIComponent(name)}/summary`);
    dl(document.getElementById("identity-stats"), [
      ["first seen", when(s.first_seen)], ["last seen", when(s.last_seen)], ["cameras", s.cameras.join(", ") || "–"],
      ["visits", s.visits], ["dwell", `${s.dwell_s} s`], ["crossings", `in ${s.crossings.in} · out ${s.crossings.out}`],
      ["tracks", s.tracks], ["seen", `${s.seen_s} s`], ["runs", s.runs_total],
    ]);
    const zones = document.getElementById("identity-zones");
    zones.replaceChildren(...Object.entries(s.zones).map(([z, v]) => {
      const tr = el("tr", {"data-zone": z});
      tr.append(el("td", {}, z), el("td", {}, String(v.visits)), el("td", {}, `${v.dwell_s} s`),
                el("td", {}, `${v.max_dwell_s} s`));
      return tr;
    }));
    if (!zones.children.length) {
      const tr = el("tr"); tr.append(el("td", {colspan: "4", class: "muted"}, "no zone visits")); zones.append(tr);
    }
    const lines = document.getElementById("identity-lines");
    lines.replaceChildren(...Object.entries(s.lines).map(([l, v]) => {
      const tr = el("tr", {"data-line": l});
      tr.append(el("td", {}, l), el("td", {}, String(v.in)), el("td", {}, String(v.out)));
      return tr;
    }));
    const photos = await api(`/api/identities/${encodeURIComponent(name)}/photos`);
    document.getElementById("identity-photos").replaceChildren(
      ...photos.map(p => face(p.face, `${name}: ${p.photo}`, "face big")));
    const timeline = document.getElementById("identity-timeline");
    const items = [];
    for (const run of s.runs) {
      const head = el("li", {class: "run-head"});
      head.append(el("strong", {}, run.camera_id), el("span", {class: "muted small"},
                  ` run ${run.run_id.slice(0, 8)} · ${when(run.started_at)} · tracks ${run.tracks.map(t => t.track_id).join(", ")}`));
      const strip = el("span", {class: "strip"});
      for (const t of run.tracks) strip.append(face(t.face, `track ${t.track_id}`, "face small"));
      head.append(strip);
      items.push(head);
      for (const ev of run.timeline) {
        const li = el("li", {class: "event", "data-track": String(ev.track)});
        li.append(face(ev.face, `track ${ev.track}`, "face small"),
                  el("span", {class: "when"}, when(ev.at)),
                  el("span", {}, ev.event === "cross" ? `crossed ${ev.line} (${ev.direction_name})`
                                                       : `${ev.event} ${ev.zone}`),
                  el("span", {class: "muted small"}, `track ${ev.track} · t=${ev.t}s`));
        items.push(li);
      }
    }
    if (!items.length) items.push(el("li", {class: "muted"}, "Not seen by any camera yet."));
    timeline.replaceChildren(...items);
    document.body.dataset.loaded = "1";
  }

  // -- search by photo -----------------------------------------------------------------------------

  function setupSearch() {
    const form = document.getElementById("search-form");
    const status = document.getElementById("search-status");
    const results = document.getElementById("search-results");
    async function submit() {
      status.textContent = "searching…"; status.className = "status";
      try {
        const r = await api("/api/search", {method: "POST", body: new FormData(form)});
        status.textContent = `${r.hits.length} track(s) within ${r.threshold} (${r.model})`;
        status.className = "status ok";
        results.replaceChildren(...r.hits.map(h => {
          const card = faceCard({...h, distance: null, reason: null}, submit);
          card.querySelector(".info").append(el("div", {class: "small distance"},
                                                `distance to the photo ${Number(h.distance).toFixed(3)}`));
          return card;
        }));
      } catch (e) {
        status.textContent = `search failed: ${e.message}`; status.className = "status error";
        results.replaceChildren();
      }
    }
    form.addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  }

  function init() {
    const page = document.body.dataset.page;
    if (page === "dashboard") document.querySelectorAll(".tile").forEach(startLive);
    if (page === "review") { refreshAllReview(); }
    if (page === "identity") {
      loadIdentity(document.body.dataset.identity).catch(e => {
        document.getElementById("identity-stats").replaceChildren(el("p", {class: "error"}, e.message));
      });
    }
    if (page === "search") { identityNames().catch(() => {}); setupSearch(); }
  }

  document.addEventListener("DOMContentLoaded", init);
  return {api, el, face, when, identityLink, clusterStrip, identityFaces};
})();
window.GC = GC;
