// rsir search page: plain JavaScript, no external resources (works with no internet).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { stats: null, browseOffset: 0, browseLimit: 16, last: null, offset: 0, montage: false };

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

async function api(path, opts = {}) {
  const r = await fetch(path, opts);
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) {
    let msg = body && body.detail ? body.detail : r.statusText;
    if (Array.isArray(msg)) msg = msg.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    throw new Error(`${r.status}: ${msg}`);
  }
  return body;
}

function showError(msg) {
  const e = $("error");
  if (!msg) { e.classList.add("hidden"); e.textContent = ""; return; }
  e.textContent = msg;
  e.classList.remove("hidden");
}

function modality() { return document.querySelector("input[name=modality]:checked").value; }

const MOD_NAMES = { s1: "Sentinel-1 (radar)", s2: "Sentinel-2 (optical)" };
const SHORT = { s1: "S1 radar", s2: "S2 optical" };

function cross() { return !!(state.stats && state.stats.index.cross_modal); }

function qlUrl(url) {
  // switch the quicklook modality of an item URL to the one chosen on the page
  if (!url || url.startsWith("data:")) return url;
  const u = new URL(url, location.origin);
  u.searchParams.set("modality", modality());
  return u.pathname + u.search;
}

function filters() {
  const f = {};
  const labs = [...$("f-labels").selectedOptions].map((o) => o.value);
  if (labs.length) { f.labels = labs; f.labels_mode = document.querySelector("input[name=f-mode]:checked").value; }
  if ($("f-from").value) f.date_from = $("f-from").value;
  if ($("f-to").value) f.date_to = $("f-to").value;
  if ($("f-split").value) f.split = $("f-split").value;
  if ($("f-season").value) f.season = $("f-season").value;
  const geo = RsirMap.filters();
  if (geo.bbox) f.bbox = geo.bbox;
  if (geo.near) f.near = geo.near;
  return f;
}

function k() { return parseInt($("f-k").value, 10); }

// "all within distance r": a Hamming radius for by-example and upload searches (null when off)
function radius() {
  if ($("radius-row").classList.contains("hidden") || !$("f-radius-on").checked) return null;
  const r = parseInt($("f-radius").value, 10);
  return Number.isFinite(r) && r >= 0 ? r : null;
}

async function loadStats() {
  const s = await api("api/stats");
  state.stats = s;
  const idx = s.index;
  $("stats").textContent = `${s.items.toLocaleString()} patches · index: ${idx.size.toLocaleString()} ` +
    `${idx.metric === "hamming" ? idx.dim + "-bit codes" : idx.dim + "-d vectors"} of ${(idx.modalities || [idx.modality]).join(" + ")} ` +
    `(${idx.kind}) · text: ${s.text_mode}`;
  if (s.text_mode !== "label-match") {  // a text-image model: hybrid by default, or either part alone
    $("text-mode").classList.remove("hidden");
    $("text-hint").textContent = "hybrid: the label matcher answers when it finds a class name or synonym in the " +
      "sentence, the learned codes otherwise.";
  }
  const lab = $("f-labels");
  for (const l of s.labels) {
    const o = el("option", { value: l.name }, `${l.name} (${l.count})`);
    if (!l.count) o.disabled = true;
    lab.append(o);
  }
  for (const id of ["f-split", "browse-split"]) {
    for (const name of Object.keys(s.splits)) {
      if (name !== "(none)") $(id).append(el("option", { value: name }, name));
    }
  }
  RsirMap.fitExtent(s.extent);
  if (s.date_range) { $("f-from").min = $("f-to").min = s.date_range[0]; $("f-from").max = $("f-to").max = s.date_range[1]; }
  for (const m of s.target_modalities) $("target-modality").append(el("option", { value: m }, MOD_NAMES[m] || m));
  if (s.target_modalities.length < 2) $("target-row").classList.add("hidden");
  if (idx.metric === "hamming" && !idx.cross_modal) {
    $("f-radius").max = idx.dim;
    $("radius-row").classList.remove("hidden");
  }
  if (idx.cross_modal) {
    // a cross-modal index: query with one modality, search another (default: radar query, optical results)
    for (const m of s.from_modalities) $("from-modality").append(el("option", { value: m }, MOD_NAMES[m] || m));
    const other = s.from_modalities.find((m) => m !== idx.modality) || idx.modality;
    $("from-modality").value = other;
    $("target-modality").value = idx.modality;
    $("from-row").classList.remove("hidden");
  }
  for (const input of document.querySelectorAll("input[name=modality]")) {
    if (!s.modalities.includes(input.value)) input.parentElement.classList.add("hidden");
  }
  const def = s.modalities.includes("s2") ? "s2" : s.modalities[0];
  const r = document.querySelector(`input[name=modality][value="${def}"]`);
  if (r) r.checked = true;
  $("upload-hint").textContent = `GeoTIFF or .npz with ${idx.expects}` +
    (idx.expects.startsWith("3 bands") ? ", or PNG/JPEG" : "") +
    `; at most ${(s.limits.max_upload_bytes / 1048576).toFixed(0)} MB.`;
}

async function loadCollections() {
  const cs = await api("api/collections");
  if (cs.length < 2) return;
  const sel = $("collection");
  for (const c of cs) {
    const o = el("option", { value: c.url }, `${c.name} (${(c.items || 0).toLocaleString()} patches)`);
    if (c.current) o.selected = true;
    sel.append(o);
  }
  sel.addEventListener("change", () => { window.location.href = sel.value; });
  $("collection-row").classList.remove("hidden");
}

async function loadBrowse() {
  const p = new URLSearchParams({ offset: state.browseOffset, limit: state.browseLimit, modality: modality() });
  if ($("browse-split").value) p.set("split", $("browse-split").value);
  const r = await api(`api/items?${p}`);
  const g = $("browse-grid");
  g.replaceChildren();
  for (const it of r.items) {
    const img = el("img", { src: qlUrl(it.quicklook), alt: it.id, title: `${it.id}\n${it.labels.join(", ")}`,
      "data-id": it.id, loading: "lazy" });
    img.addEventListener("click", () => searchId(it.id, 0));
    g.append(img);
  }
  const end = Math.min(r.total, state.browseOffset + r.items.length);
  $("browse-info").textContent = r.total ? `${state.browseOffset + 1}–${end} of ${r.total}` : "no items";
  $("browse-prev").disabled = state.browseOffset === 0;
  $("browse-next").disabled = end >= r.total;
}

async function run(kind, payload, offset) {
  showError(null);
  state.offset = offset;
  document.body.classList.add("busy");
  try {
    let r;
    const pictures = { montage: state.montage, codemap: RsirCodemap.loaded() };
    if (kind === "id") {
      r = await api("api/search/id", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ id: payload, k: k(), offset, filters: filters(),
          target_modality: $("target-modality").value || null,
          from_modality: cross() ? $("from-modality").value : null, radius: radius(), ...pictures }) });
    } else if (kind === "text") {
      r = await api("api/search/text", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text: payload, k: k(), offset, filters: filters(), montage: state.montage,
          mode: $("text-mode").value }) });
    } else {
      const fd = new FormData();
      fd.append("file", payload);
      fd.append("k", k());
      fd.append("offset", offset);
      fd.append("filters", JSON.stringify(filters()));
      if (cross()) fd.append("target_modality", $("target-modality").value);
      fd.append("montage", pictures.montage);
      fd.append("codemap", pictures.codemap);
      if (radius() !== null) fd.append("radius", radius());
      r = await api("api/search/upload", { method: "POST", body: fd });
    }
    state.last = { kind, payload, response: r };
    render(r);
  } catch (e) {
    showError(e.message);
  } finally {
    document.body.classList.remove("busy");
  }
}

function searchId(id, offset) { return run("id", id, offset); }

function labelChips(labels, queryLabels) {
  const box = el("div", { class: "labels" });
  for (const l of labels) box.append(el("span", { class: "label" + (queryLabels.has(l) ? " shared" : "") }, l));
  return box;
}

function render(r) {
  $("empty").classList.add("hidden");
  $("query-box").classList.remove("hidden");
  const q = r.query;
  const qLabels = new Set(q.labels || []);
  const img = $("query-img");
  // a cross-modal answer shows the query in its own modality (e.g. radar) and the results in the target's
  const ql = r.direction ? ((url) => url) : qlUrl;
  if (r.mode === "id" || r.mode === "feedback") {
    img.src = ql(q.quicklook); img.classList.remove("hidden");
    $("query-title").textContent = `Query: ${q.id}` + (q.date ? ` · ${q.date}` : "") + (q.country ? ` · ${q.country}` : "");
  } else if (r.mode === "upload") {
    img.src = q.quicklook; img.classList.remove("hidden");
    $("query-title").textContent = `Query: uploaded ${q.filename} (${q.format})`;
  } else {
    img.classList.add("hidden");
    $("query-title").textContent = `Query: “${q.text}”`;
  }
  $("query-labels").replaceChildren(...labelChips(q.labels || [], qLabels).childNodes);
  showCaptions(r.mode === "id" ? q.id : null);
  const modeName = { id: "search by example", upload: "search by upload", feedback: "relevance feedback" }[r.mode]
    || (q.answered ? `text (${q.text_mode}): answered by: ${q.answered}` +
      (state.stats && state.stats.text_mode === "label-match" ? " (no text-image model)" : "") : r.mode);
  const parts = [el("span", { class: "mode", id: "mode" }, modeName)];
  if (r.direction) {
    const [a, b] = r.direction.split("->");
    parts.push(el("span", { id: "direction", "data-direction": r.direction }, "direction: ",
      el("b", {}, `${SHORT[a] || a} → ${SHORT[b] || b}`)));
  }
  if (r.mode === "text") parts.push(el("span", { id: "why" }, q.why));
  if (r.mode === "label-match") {
    parts.push(el("span", {}, q.concepts.length
      ? "matched: " + q.concepts.map((c) => `“${c.phrase}” → ${c.labels.join(" / ")}`).join("; ")
      : "no class name or synonym found in the text"));
  }
  parts.push(el("span", {}, "precision: ", el("b", { id: "precision" },
    r.precision === null ? "n/a" : `${(100 * r.precision).toFixed(0)}%`)));
  parts.push(el("span", {}, "query time: ", el("b", { id: "query-time" }, `${r.query_ms.toFixed(1)} ms`)));
  parts.push(el("span", {}, `${r.matching.toLocaleString()} items pass the filters`));
  if (r.radius !== undefined && r.radius !== null) {
    parts.push(el("span", {}, el("b", { id: "within-count", "data-within": r.within }, r.within.toLocaleString()),
      ` within distance ${r.radius}`));
  }
  $("summary").replaceChildren(...parts);

  const grid = $("results");
  grid.replaceChildren();
  for (const it of r.results) {
    const cls = "card" + (it.shares_label === true ? " rel" : it.shares_label === false ? " nonrel" : "");
    const dist = it.distance === null ? `overlap ${it.concepts_matched}` : r.metric === "hamming" ? `d=${it.distance}`
      : `${r.metric}=${Number(it.distance).toFixed(3)}`;
    const card = el("div", { class: cls, "data-id": it.id, title: "click to search with this patch" },
      el("img", { src: ql(it.quicklook), alt: it.id, loading: "lazy" }),
      el("div", { class: "meta" },
        el("div", { class: "top" }, el("span", {}, `#${it.rank}`), el("span", { class: "dist" }, dist)),
        el("div", { class: "id" }, it.id + (it.date ? ` · ${it.date}` : "")),
        labelChips(it.labels, qLabels)));
    card.addEventListener("click", () => searchId(it.id, 0));
    card.addEventListener("mouseenter", () => RsirMap.highlight(it.id, true));
    card.addEventListener("mouseleave", () => RsirMap.highlight(it.id, false));
    grid.append(card);
  }
  if (!r.results.length) grid.append(el("div", { class: "empty" }, "No results (try fewer filters)."));
  const pager = $("result-pager");
  const more = r.within !== undefined && r.within !== null ? r.offset + r.results.length < Math.min(r.within,
    state.stats.limits.max_radius_hits || r.within) : r.results.length >= r.k;
  pager.classList.toggle("hidden", r.offset === 0 && !more);
  $("res-prev").disabled = r.offset === 0;
  $("res-next").disabled = !more;
  $("res-info").textContent = r.results.length ? `results ${r.offset + 1}–${r.offset + r.results.length}` : "";
  RsirMap.showResults(r);
  $("views").classList.remove("hidden");
  $("montage-panel").classList.toggle("hidden", !r.montage);
  if (r.montage) $("montage-img").src = r.montage;
  if (RsirCodemap.loaded()) RsirCodemap.place(r.query.codemap);
}

async function showCaptions(id) {
  // an item's own captions and, with a text-image model, the archive captions nearest to its image code
  const box = $("query-captions");
  box.replaceChildren();
  box.classList.add("hidden");
  if (id === null) return;
  let c;
  try {
    c = await api(`api/items/${encodeURIComponent(id)}/captions?k=5`);
  } catch (e) { return; }
  if (!c.captions.length && !c.nearest.length) return;
  if (c.captions.length) {
    box.append(el("div", { class: "cap-head" }, "Its captions"),
      el("ul", { id: "own-captions" }, ...c.captions.map((t) => el("li", {}, t))));
  }
  if (c.nearest.length) {
    box.append(el("div", { class: "cap-head" }, `Nearest captions in the archive (${c.answered_by})`),
      el("ol", { id: "nearest-captions" }, ...c.nearest.map((n) => el("li", { class: n.own ? "own" : "" },
        `${n.caption} `, el("span", { class: "cap-meta" }, `d=${n.distance} · ${n.own ? "its own" : n.item_id}`)))));
  }
  box.classList.remove("hidden");
}

function rerun(offset) {
  if (state.last) run(state.last.kind, state.last.payload, offset);
}

function init() {
  for (const b of document.querySelectorAll(".tab")) {
    b.addEventListener("click", () => {
      for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === b);
      for (const p of document.querySelectorAll(".tabpane")) p.classList.toggle("hidden", p.id !== `pane-${b.dataset.tab}`);
    });
  }
  $("browse-prev").addEventListener("click", () => { state.browseOffset = Math.max(0, state.browseOffset - state.browseLimit); loadBrowse(); });
  $("browse-next").addEventListener("click", () => { state.browseOffset += state.browseLimit; loadBrowse(); });
  $("browse-split").addEventListener("change", () => { state.browseOffset = 0; loadBrowse(); });
  $("random-btn").addEventListener("click", async () => {
    try {
      const sp = $("browse-split").value;
      const it = await api("api/random" + (sp ? `?split=${encodeURIComponent(sp)}` : ""));
      searchId(it.id, 0);
    } catch (e) { showError(e.message); }
  });
  $("upload-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = $("upload-file").files[0];
    if (!f) { showError("Choose a file first."); return; }
    run("upload", f, 0);
  });
  $("text-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("text-input").value.trim();
    if (!t) { showError("Type a sentence first."); return; }
    run("text", t, 0);
  });
  $("res-prev").addEventListener("click", () => rerun(Math.max(0, state.offset - k())));
  $("res-next").addEventListener("click", () => rerun(state.offset + k()));
  RsirMap.init(() => rerun(0), (id) => searchId(id, 0));
  $("montage-btn").addEventListener("click", () => {
    state.montage = !state.montage;
    $("montage-btn").classList.toggle("on", state.montage);
    if (state.montage) rerun(state.offset); else $("montage-panel").classList.add("hidden");
  });
  $("codemap-btn").addEventListener("click", async () => {
    const panel = $("codemap-panel");
    if (!panel.classList.contains("hidden")) { panel.classList.add("hidden"); $("codemap-btn").classList.remove("on"); return; }
    panel.classList.remove("hidden");
    $("codemap-btn").classList.add("on");
    if (RsirCodemap.loaded()) return;
    $("codemap-info").textContent = "fitting the map (once; up to a minute)…";
    try {
      await RsirCodemap.load(api, (id) => searchId(id, 0));
      rerun(state.offset); // place the current query
    } catch (e) { showError(e.message); }
  });
  for (const id of ["f-labels", "f-from", "f-to", "f-split", "f-season", "f-k", "target-modality", "from-modality",
    "f-radius-on", "f-radius"]) {
    $(id).addEventListener("change", () => rerun(0));
  }
  $("f-clear-labels").addEventListener("click", () => { for (const o of $("f-labels").options) o.selected = false; rerun(0); });
  for (const m of document.querySelectorAll("input[name=f-mode]")) m.addEventListener("change", () => rerun(0));
  for (const m of document.querySelectorAll("input[name=modality]")) {
    m.addEventListener("change", () => { loadBrowse(); if (state.last) render(state.last.response); });
  }
  loadStats().then(loadBrowse).catch((e) => showError(e.message));
  loadCollections().catch((e) => showError(e.message));
}

document.addEventListener("DOMContentLoaded", init);
