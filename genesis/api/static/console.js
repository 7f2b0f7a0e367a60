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
            // The counter says what the status says (the stored sightings may not be written yet).
            const inView = tile.querySelector('[data-count="in_view"]');
            if (inView) inView.textContent = String(live.frame.persons.length);
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

  async function identityFaces(cell, name) {
    try {
      const photos = await api(`/api/identities/${encodeURIComponent(name)}/photos?limit=4`);
      cell.replaceChildren(...photos.items.map(p => face(p.face, `${name}: ${p.photo}`, "face small")));
    } catch (e) { cell.textContent = ""; }
  }

  // -- review ------------------------------------------------------------------------------------
  // Every face is one segment of a track (run, track, segment): a track may be cut between people,
  // so every action names the segment whose face the operator saw, and leaves the others alone.

  const PAGE = 24;

  async function identityNames() {
    const rows = await api("/api/identities");
    const list = document.getElementById("identity-names");
    if (list) list.replaceChildren(...rows.map(r => el("option", {value: r.name})));
    return rows.map(r => r.name);
  }

  function segmentUrl(item, action) {
    return `/api/tracks/${encodeURIComponent(item.run_id)}/${item.track_id}/segments/${item.segment || 0}/${action}`;
  }

  // The page's message line: what was done, with an Undo (the action's audited inverse).
  function flash(done, after) {
    const box = document.getElementById("flash");
    if (!box) return;
    const text = el("span", {class: "flash-text"}, done.message);
    const parts = [text];
    if (done.entry && window.GENESIS.canOperate) {
      const undo = el("button", {type: "button", class: "undo"}, "Undo");
      undo.addEventListener("click", async () => {
        undo.disabled = true;
        try {
          const r = await post(`/api/audit/${done.entry}/undo`, {});
          box.className = "flash ok";
          box.replaceChildren(el("span", {class: "flash-text"}, r.message));
          await after();
        } catch (e) {
          box.className = "flash error";
          box.replaceChildren(el("span", {class: "flash-text"}, `undo failed: ${e.message}`));
        }
      });
      parts.push(undo);
    }
    box.className = "flash ok";
    box.hidden = false;
    box.replaceChildren(...parts);
  }

  function flashError(message) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.className = "flash error"; box.hidden = false;
    box.replaceChildren(el("span", {class: "flash-text"}, message));
  }

  let fieldSeq = 0;
  function labelled(input, text) {
    const id = `f${++fieldSeq}`;
    input.id = id;
    const label = el("label", {for: id, class: "visually-hidden"}, text);
    return [label, input];
  }

  function actionBar(item, after) {
    const bar = el("div", {class: "actions"});
    if (!window.GENESIS.canOperate) return bar;
    if (!item.face) {
      // Blurred (or never kept): nobody can see this face, so nobody may name it here.
      bar.append(el("span", {class: "small muted no-review"},
                    "face not kept (privacy blur): it cannot be named or rejected here"));
      return bar;
    }
    const input = el("input", {list: "identity-names", placeholder: "name", maxlength: "128", class: "assign-name"});
    const assign = el("button", {type: "button", class: "assign"}, "assign");
    const create = el("button", {type: "button", class: "create"}, "new identity");
    const say = el("span", {class: "small action-status", role: "status"});
    const run = async (fn) => {
      try { const done = await fn(); flash(done, after); await after(); }
      catch (e) { say.textContent = e.message; say.className = "small action-status error"; }
    };
    assign.addEventListener("click", () => run(() => {
      if (!input.value.trim()) throw new Error("type the name of an enrolled identity");
      return post(segmentUrl(item, "assign"), {name: input.value.trim(), create: false});
    }));
    create.addEventListener("click", () => run(() => {
      if (!input.value.trim()) throw new Error("type the new identity's name");
      return post(segmentUrl(item, "assign"), {name: input.value.trim(), create: true});
    }));
    bar.append(...labelled(input, `name for the face of ${item.label || "this segment"}`), assign, create);
    if (item.identity) {
      const reject = el("button", {type: "button", class: "danger reject"}, "not this person");
      reject.addEventListener("click", () => run(() => post(segmentUrl(item, "reject"), {identity: item.identity})));
      bar.append(reject);
    }
    bar.append(say);
    return bar;
  }

  function faceCard(item, after) {
    const card = el("article", {class: "face-card", "data-run": item.run_id, "data-track": String(item.track_id),
                                "data-segment": String(item.segment || 0)});
    const name = item.label || `track ${item.track_id}`;
    card.append(face(item.face, `face of ${name}`, "face big"));
    const info = el("div", {class: "info"});
    const who = el("div", {class: "who"});
    if (item.identity) who.append(identityLink(item.identity));
    else who.append(el("span", {class: "muted"}, item.unknown || "unrecognised"));
    if (item.reason) who.append(el("span", {class: `reason small ${item.reason === "low margin" ? "warn" : ""}`},
                                   ` · ${item.reason}`));
    info.append(who,
                el("div", {class: "small muted where"}, `${item.camera_id} · ${when(item.seen_at)} · ${name}`),
                el("div", {class: "small muted"},
                   item.distance == null ? "" : `distance ${Number(item.distance).toFixed(3)}`));
    card.append(info, actionBar(item, after));
    return card;
  }

  // Prev / next under a list: `state.offset` moves by `PAGE`, then `load()`.
  function pager(box, state, total, load) {
    if (!box) return;
    const prev = el("button", {type: "button", class: "link prev"}, "‹ newer");
    const next = el("button", {type: "button", class: "link next"}, "older ›");
    prev.disabled = state.offset <= 0;
    next.disabled = state.offset + PAGE >= total;
    prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); load(); });
    next.addEventListener("click", () => { state.offset += PAGE; load(); });
    const where = total ? `${state.offset + 1}–${Math.min(total, state.offset + PAGE)} of ${total}` : "";
    box.replaceChildren(prev, el("span", {class: "small muted"}, where), next);
    box.hidden = total <= PAGE;
  }

  const reviewState = {offset: 0}, clusterState = {offset: 0};

  async function refreshReview() {
    const box = document.getElementById("review-faces");
    const total = document.getElementById("review-total");
    try {
      let page = await api(`/api/review?limit=${PAGE}&offset=${reviewState.offset}`);
      if (!page.items.length && reviewState.offset > 0) {
        reviewState.offset = Math.max(0, Math.floor((page.total - 1) / PAGE) * PAGE);
        page = await api(`/api/review?limit=${PAGE}&offset=${reviewState.offset}`);
      }
      total.textContent = `${page.total} to review (threshold ${page.threshold}, margin ${page.margin})`;
      if (!page.items.length) box.replaceChildren(el("p", {class: "muted"}, "Nothing to review."));
      else box.replaceChildren(...page.items.map(i => faceCard(i, refreshAllReview)));
      pager(document.getElementById("review-pager"), reviewState, page.total, refreshReview);
    } catch (e) { box.replaceChildren(el("p", {class: "error"}, `review unavailable: ${e.message}`)); }
  }

  // A cluster's faces: a sample spread over all of them (the most typical first, the least typical
  // last), so a face that does not belong shows before anyone names or merges the group.
  async function clusterStrip(cell, cluster, n = 7) {
    try {
      const page = await api(`/api/unknowns/${encodeURIComponent(cluster)}/faces?limit=${n}&sample=true`);
      const [best, ...others] = page.items;
      cell.replaceChildren(face(best && best.face, `most typical face of ${cluster}`, "face best"));
      const strip = el("span", {class: "strip"});
      for (const f of others) strip.append(face(f.face, `a face of ${cluster} (${f.label})`, "face small"));
      cell.append(strip);
      if (page.total > page.items.length) {
        cell.append(el("span", {class: "small muted sample-note"}, ` ${page.items.length} of ${page.total} faces`));
      }
      cell.dataset.hidden = String(page.items.filter(f => !f.face).length);
    } catch (e) { cell.textContent = "–"; }
  }

  // Merge asks first: both groups' faces side by side, then "merge" or "cancel".
  function confirmMerge(card, u, into, done) {
    const old = card.querySelector(".merge-confirm");
    if (old) old.remove();
    const box = el("div", {class: "merge-confirm", role: "group", "aria-label": `merge ${u.id} into ${into}?`});
    const mine = el("div", {class: "cluster-faces"}), theirs = el("div", {class: "cluster-faces"});
    clusterStrip(mine, u.id); clusterStrip(theirs, into);
    const yes = el("button", {type: "button", class: "confirm-merge danger"}, `merge ${u.id} into ${into}`);
    const no = el("button", {type: "button", class: "link cancel-merge"}, "cancel");
    no.addEventListener("click", () => box.remove());
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      try {
        const r = await post(`/api/unknowns/${encodeURIComponent(u.id)}/merge`, {into});
        box.remove();
        flash(r, refreshAllReview);
        await done();
      } catch (e) { flashError(e.message); yes.disabled = false; }
    });
    box.append(el("p", {class: "small"}, `Are these the same person? All faces of ${u.id} join ${into}.`),
               el("div", {class: "small muted"}, u.id), mine, el("div", {class: "small muted"}, into), theirs,
               yes, no);
    card.append(box);
  }

  function clusterCard(u, clusters) {
    const card = el("article", {class: "cluster-card", "data-cluster": u.id});
    const faces = el("div", {class: "cluster-faces"});
    clusterStrip(faces, u.id);
    const head = el("div", {class: "who"}, u.id);
    const info = el("div", {class: "small muted"},
                    `${u.size} face(s) · ${u.cameras.join(", ")} · last seen ${when(u.last_seen)}`);
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
          const r = await post(`/api/unknowns/${encodeURIComponent(u.id)}/name`, {name: who, merge: known.includes(who)});
          flash(r, refreshAllReview);
          await refreshAllReview();
        } catch (e) { say.textContent = e.message; say.className = "small action-status error"; }
      });
      bar.append(...labelled(input, `name for ${u.id}`), name);
      const others = clusters.filter(c => c.id !== u.id && c.model === u.model);
      if (others.length) {
        const select = el("select", {class: "merge-into"});
        select.append(...others.map(c => el("option", {value: c.id}, c.id)));
        const merge = el("button", {type: "button", class: "merge"}, "merge into");
        merge.addEventListener("click", () => confirmMerge(card, u, select.value, refreshAllReview));
        bar.append(merge, ...labelled(select, `group to merge ${u.id} into`));
      }
      bar.append(say);
      card.append(bar);
    }
    return card;
  }

  async function refreshClusters() {
    const box = document.getElementById("review-clusters");
    try {
      // Merge targets: every group (the select offers them all), the cards: one page.
      const all = await api("/api/unknowns?limit=1000");
      if (clusterState.offset >= all.total && clusterState.offset > 0) {
        clusterState.offset = Math.max(0, Math.floor((all.total - 1) / PAGE) * PAGE);
      }
      const items = all.items.slice(clusterState.offset, clusterState.offset + PAGE);
      // A merge being decided stays on screen: redraw when it is done (or cancelled).
      if (document.querySelector(".merge-confirm")) { whenIdle(refreshClusters); return; }
      document.getElementById("clusters-total").textContent = all.total ? `${all.total} in all` : "";
      if (!items.length) box.replaceChildren(el("p", {class: "muted"}, "No unknown faces."));
      else box.replaceChildren(...items.map(u => clusterCard(u, all.items)));
      pager(document.getElementById("clusters-pager"), clusterState, all.total, refreshClusters);
    } catch (e) { box.replaceChildren(el("p", {class: "error"}, `unknown faces unavailable: ${e.message}`)); }
  }

  async function refreshAllReview() {
    await Promise.all([identityNames().catch(() => {}), refreshReview(), refreshClusters()]);
  }

  // -- live updates (server-sent events) -----------------------------------------------------------
  // One stream per page; `state` says the sizes of the lists and each camera's counters. A page
  // refreshes what changed (and never while the operator is typing in a card); on the stream's first
  // state it refreshes once, as it cannot know what changed since it read its lists.

  function liveUpdates(onChange) {
    if (!window.EventSource) return;
    let last = null;
    const source = new EventSource("/api/console/events");
    source.addEventListener("state", (event) => {
      let state;
      try { state = JSON.parse(event.data); } catch (e) { return; }
      // The first state is compared with nothing: a change made between the page's first reads and the
      // stream's opening (a name given while the page was loading) would otherwise never be shown.
      const previous = last || {};
      last = state;
      document.body.dataset.events = String(Number(document.body.dataset.events || 0) + 1);
      onChange(state, previous);
    });
  }

  function listsChanged(a, b) {
    return ["identities", "unknowns", "unknowns_seen", "faces", "audit_last"].some(k => a[k] !== b[k]);
  }

  // Not while the operator is typing a name or deciding a merge: the lists wait.
  function busy() {
    const active = document.activeElement;
    return (active && active.matches("input, select") && active.value) || document.querySelector(".merge-confirm");
  }

  function whenIdle(fn) {
    const attempt = () => { if (busy()) window.setTimeout(attempt, 1000); else fn(); };
    attempt();
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
    await Promise.all([identityPhotos(name), identityTimeline(name)]);
    document.body.dataset.loaded = "1";
  }

  // The identity's photos and timeline come in pages (`pager`); a page past the end (faces were
  // forgotten meanwhile) falls back to the last one.
  const photoState = {offset: 0}, timelineState = {offset: 0};

  async function identityPage(path, state) {
    let page = await api(`${path}?limit=${PAGE}&offset=${state.offset}`);
    if (!page.items.length && state.offset > 0) {
      state.offset = Math.max(0, Math.floor((page.total - 1) / PAGE) * PAGE);
      page = await api(`${path}?limit=${PAGE}&offset=${state.offset}`);
    }
    return page;
  }

  async function identityPhotos(name) {
    const page = await identityPage(`/api/identities/${encodeURIComponent(name)}/photos`, photoState);
    const box = document.getElementById("identity-photos");
    box.replaceChildren(...page.items.map(p => face(p.face, `${name}: ${p.photo}`, "face big")));
    box.dataset.offset = String(page.offset);
    pager(document.getElementById("photos-pager"), photoState, page.total, () => identityPhotos(name));
  }

  async function identityTimeline(name) {
    const page = await identityPage(`/api/identities/${encodeURIComponent(name)}/timeline`, timelineState);
    const timeline = document.getElementById("identity-timeline");
    const items = [];
    for (const run of page.items) {
      const head = el("li", {class: "run-head", "data-run": run.run_id});
      head.append(el("strong", {}, run.camera_id), el("span", {class: "muted small"},
                  ` run ${run.run_id.slice(0, 8)} · ${when(run.started_at)} · tracks ${run.tracks.map(t => t.track_id).join(", ")}`));
      const strip = el("span", {class: "strip"});
      for (const t of run.tracks) strip.append(face(t.face, `${name} in ${t.label}`, "face small"));
      head.append(strip);
      items.push(head);
      for (const ev of run.timeline) {
        const li = el("li", {class: "event", "data-track": String(ev.track)});
        const where = `run ${run.run_id.slice(0, 8)} · track ${ev.track}` + (ev.segment ? ` · segment ${ev.segment}` : "");
        li.append(face(ev.face, `${name} in ${where}`, "face small"),
                  el("span", {class: "when"}, when(ev.at)),
                  el("span", {}, ev.event === "cross" ? `crossed ${ev.line} (${ev.direction_name})`
                                                       : `${ev.event} ${ev.zone}`),
                  el("span", {class: "muted small"}, `${where} · t=${ev.t}s`));
        items.push(li);
      }
    }
    if (!items.length) items.push(el("li", {class: "muted"}, "Not seen by any camera yet."));
    timeline.replaceChildren(...items);
    timeline.dataset.offset = String(page.offset);
    pager(document.getElementById("timeline-pager"), timelineState, page.total, () => identityTimeline(name));
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

  // -- audit page (admins) -------------------------------------------------------------------------

  const auditState = {offset: 0};

  async function refreshAudit() {
    const body = document.getElementById("audit-rows");
    const action = document.getElementById("audit-action").value;
    try {
      const q = new URLSearchParams({limit: String(PAGE), offset: String(auditState.offset)});
      if (action) q.set("action", action);
      const page = await api(`/api/audit?${q}`);
      body.replaceChildren(...page.items.map(a => {
        const tr = el("tr", {"data-entry": String(a.id), "data-action": a.action});
        const detail = Object.entries(a.detail).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
        tr.append(el("td", {}, when(a.at)), el("td", {}, a.actor), el("td", {}, a.action), el("td", {}, a.target || "–"),
                  el("td", {class: "small"}, detail.join(" · ")));
        const cell = el("td");
        if (a.undoable) {
          const undo = el("button", {type: "button", class: "link undo"}, "Undo");
          undo.setAttribute("aria-label", `undo ${a.action} ${a.target || ""} (entry ${a.id})`);
          undo.addEventListener("click", async () => {
            try { const r = await post(`/api/audit/${a.id}/undo`, {}); flash(r, refreshAudit); await refreshAudit(); }
            catch (e) { flashError(e.message); }
          });
          cell.append(undo);
        }
        tr.append(cell);
        return tr;
      }));
      if (!page.items.length) {
        const tr = el("tr"); tr.append(el("td", {colspan: "6", class: "muted"}, "No entries.")); body.replaceChildren(tr);
      }
      pager(document.getElementById("audit-pager"), auditState, page.total, refreshAudit);
    } catch (e) {
      const tr = el("tr"); tr.append(el("td", {colspan: "6", class: "error"}, `audit log unavailable: ${e.message}`));
      body.replaceChildren(tr);
    }
  }

  function init() {
    const page = document.body.dataset.page;
    if (page === "dashboard") document.querySelectorAll(".tile").forEach(startLive);
    if (page === "review") {
      refreshAllReview();
      liveUpdates((now, before) => { if (listsChanged(now, before)) whenIdle(refreshAllReview); });
    }
    if (page === "identity") {
      const name = document.body.dataset.identity;
      const load = () => loadIdentity(name).catch(e => {
        document.body.dataset.loaded = "1";
        if (e.status === 404) {
          document.getElementById("identity-name").textContent = `No identity named “${name}”`;
          for (const id of ["identity-stats", "identity-timeline"]) {
            document.getElementById(id).replaceChildren(el("p", {class: "muted"},
              "It was never enrolled, or it was renamed or forgotten. See the identity library on the dashboard."));
          }
          document.body.dataset.missing = "1";
          return;
        }
        document.getElementById("identity-stats").replaceChildren(el("p", {class: "error"}, e.message));
      });
      load();
      liveUpdates((now, before) => { if (listsChanged(now, before)) load(); });
    }
    if (page === "search") { identityNames().catch(() => {}); setupSearch(); }
    if (page === "audit") {
      document.getElementById("audit-action").addEventListener("change", () => { auditState.offset = 0; refreshAudit(); });
      refreshAudit();
      liveUpdates((now, before) => { if (now.audit_last !== before.audit_last && auditState.offset === 0) refreshAudit(); });
    }
  }

  document.addEventListener("DOMContentLoaded", init);
  return {api, el, face, when, identityLink, clusterStrip, identityFaces, liveUpdates, listsChanged, whenIdle,
          pager, PAGE, flash, startLive};
})();
window.GC = GC;
