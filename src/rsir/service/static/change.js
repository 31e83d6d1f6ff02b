// rsir search page, change mode: text <-> bitemporal pairs (shown when the server has a change index).
"use strict";

const change = { info: null, last: null };

async function changeApi(path, body) {
  return api(path, body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) });
}

function pairImages(p) {
  return el("div", { class: "pair-imgs" },
    el("figure", {}, el("img", { src: p.before_quicklook, alt: `before ${p.before}`, class: "before" }),
      el("figcaption", {}, `before · ${p.before_date || "?"}`)),
    el("figure", {}, el("img", { src: p.after_quicklook, alt: `after ${p.after}`, class: "after" }),
      el("figcaption", {}, `after · ${p.after_date || "?"}`)),
    el("figure", {}, el("img", { src: p.difference, alt: `difference ${p.pair_id}`, class: "diff" }),
      el("figcaption", {}, "difference")));
}

function changeSummary(r, modeName) {
  $("summary").replaceChildren(
    el("span", { class: "mode", id: "mode" }, modeName),
    el("span", {}, `answered by ${r.query.method} (${change.info.bits}-bit codes)`),
    el("span", {}, "query time: ", el("b", { id: "query-time" }, `${r.query_ms.toFixed(1)} ms`)));
}

function renderChangeText(r) {
  $("empty").classList.add("hidden");
  $("query-box").classList.remove("hidden");
  $("query-img").classList.add("hidden");
  $("query-title").textContent = `Change: “${r.query.text}”`;
  $("query-labels").replaceChildren();
  changeSummary(r, "change: text → pairs");
  const grid = $("results");
  grid.replaceChildren();
  for (const p of r.results) {
    const card = el("div", { class: "card pair-card", "data-id": p.pair_id, title: "click: sentences describing this change" },
      pairImages(p),
      el("div", { class: "meta" },
        el("div", { class: "top" }, el("span", {}, `#${p.rank}`), el("span", { class: "dist" }, `d=${p.distance}`)),
        el("div", { class: "id" }, `${p.pair_id} · ${p.split}`),
        el("div", { class: "caption" }, p.captions.length ? `“${p.captions[0]}”` : "")));
    card.addEventListener("click", () => changePair(p.pair_id));
    grid.append(card);
  }
  if (!r.results.length) grid.append(el("div", { class: "empty" }, "No pairs."));
  $("result-pager").classList.add("hidden");
  $("map-panel").classList.add("hidden");
}

function renderChangePair(r) {
  const p = r.query.pair;
  $("empty").classList.add("hidden");
  $("query-box").classList.remove("hidden");
  $("query-img").classList.add("hidden");
  $("query-title").textContent = `Pair ${p.pair_id}: ${p.before_date} → ${p.after_date}`;
  $("query-labels").replaceChildren(pairImages(p));
  changeSummary(r, "change: pair → sentences");
  const list = el("ol", { class: "sentences", start: String(r.offset + 1) });
  for (const s of r.results) {
    const own = s.pair_id === p.pair_id;
    list.append(el("li", { class: own ? "own" : "" }, `d=${s.distance} · “${s.text}”`,
      el("span", { class: "hint" }, own ? "  (this pair's own caption)" : `  (pair ${s.pair_id})`)));
  }
  $("results").replaceChildren(list);
  $("result-pager").classList.add("hidden");
  $("map-panel").classList.add("hidden");
}

async function changeText(text) {
  showError(null);
  try {
    const r = await changeApi("api/change/search/text", { text, k: k(), split: $("change-split").value || null });
    change.last = r;
    renderChangeText(r);
  } catch (e) { showError(e.message); }
}

async function changePair(pair) {
  showError(null);
  try {
    const r = await changeApi("api/change/search/pair", { pair, k: k(), target: "text" });
    renderChangePair(r);
  } catch (e) { showError(e.message); }
}

async function loadChangePairs() {
  const sp = $("change-split").value;
  const r = await changeApi(`api/change/pairs?limit=16${sp ? `&split=${encodeURIComponent(sp)}` : ""}`);
  const g = $("change-grid");
  g.replaceChildren();
  for (const p of r.pairs) {
    const img = el("img", { src: p.after_quicklook, alt: p.pair_id, title: `${p.pair_id}\n${p.captions[0] || ""}`,
      "data-id": p.pair_id, loading: "lazy" });
    img.addEventListener("click", () => changePair(p.pair_id));
    g.append(img);
  }
}

async function initChange() {
  let info;
  try { info = await changeApi("api/change"); } catch (_) { return; } // no change index on this server
  change.info = info;
  $("tab-change").classList.remove("hidden");
  for (const name of Object.keys(info.splits)) $("change-split").append(el("option", { value: name }, name));
  $("change-hint").textContent = `${info.pairs} before/after pairs, ${info.captions} sentences (${info.method}). ` +
    "Type what changed, or click a pair to see the sentences that describe it.";
  $("change-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("change-input").value.trim();
    if (!t) { showError("Type what changed first."); return; }
    changeText(t);
  });
  $("change-split").addEventListener("change", () => loadChangePairs().catch((e) => showError(e.message)));
  loadChangePairs().catch((e) => showError(e.message));
}

document.addEventListener("DOMContentLoaded", initChange);
