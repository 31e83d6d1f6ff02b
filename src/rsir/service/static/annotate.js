// rsir annotation mode and relevance feedback (plain JavaScript, loaded after app.js, whose helpers it uses).
// Annotation: pairs chosen by ANNEAL are shown side by side; s = similar, d = not similar, space = skip.
// Feedback: mark results relevant / not relevant, "search again" re-ranks (Rocchio), marks become training pairs.
"use strict";

const ann = { enabled: false, pairs: [], idx: 0, skipped: new Set(), marks: new Map(), fbQuery: null, timer: null };

function annToken() { return $("ann-token").value.trim(); }

function authHeaders() {
  const h = { "Content-Type": "application/json" };
  if (annToken()) h.Authorization = `Bearer ${annToken()}`;
  return h;
}

async function annStatus() {
  const s = await api("api/annotate/status");
  const v = s.model_version === null ? "frozen features (no model yet)" : `model v${s.model_version}`;
  const m = s.model_metrics && s.model_metrics["map@20"] !== undefined ? ` · mAP@20 ${s.model_metrics["map@20"]}` : "";
  $("ann-status").textContent = `${s.labelled} answered · ${s.pending} waiting · ${v}${m}`;
  $("ann-status").dataset.version = s.model_version === null ? "" : String(s.model_version);
  $("ann-status").dataset.pending = String(s.pending);
  const p = s.progress;
  const running = s.running_round !== null;
  $("ann-round").disabled = running;
  $("ann-progress").textContent = running
    ? `round ${p.round}: ${p.phase}${p.steps ? ` ${p.step}/${p.steps}` : ""}…`
    : (s.last_error ? `last round failed: ${s.last_error}` : "");
  $("ann-progress").dataset.running = running ? "1" : "";
  return s;
}

function pollRound() {
  clearInterval(ann.timer);
  ann.timer = setInterval(async () => {
    try {
      const s = await annStatus();
      if (s.running_round === null) { clearInterval(ann.timer); if (!$("ann-view").classList.contains("hidden")) loadPairs(); }
    } catch (e) { clearInterval(ann.timer); showError(e.message); }
  }, 500);
}

async function startRound() {
  showError(null);
  try {
    await api("api/annotate/round", { method: "POST", headers: authHeaders(),
      body: JSON.stringify({ strategy: $("ann-strategy").value, budget: parseInt($("ann-budget").value, 10) }) });
    await annStatus();
    pollRound();
  } catch (e) { showError(e.message); }
}

async function loadPairs() {
  const r = await api(`api/annotate/next?n=50&labels=${$("ann-labels").checked}`);
  ann.pairs = r.pairs.filter((p) => !ann.skipped.has(p.query_id));
  ann.idx = 0;
  showPair();
}

function showPair() {
  const p = ann.pairs[ann.idx];
  $("ann-empty").classList.toggle("hidden", !!p);
  $("ann-pair").classList.toggle("hidden", !p);
  if (!p) return;
  for (const side of ["a", "b"]) {
    const it = p[side];
    $(`ann-${side}`).src = qlUrl(it.quicklook);
    $(`ann-${side}`).dataset.id = it.id;
    $(`ann-${side}-id`).textContent = it.id + (it.labels ? ` · ${it.labels.join(", ")}` : "");
  }
  $("ann-pair").dataset.query = String(p.query_id);
}

async function answer(kind) {
  const p = ann.pairs[ann.idx];
  if (!p) return;
  if (kind === "skip") { ann.skipped.add(p.query_id); ann.idx += 1; showPair(); return; }
  showError(null);
  try {
    await api("api/annotate/answer", { method: "POST", headers: authHeaders(),
      body: JSON.stringify({ query_id: p.query_id, answer: kind }) });
    ann.idx += 1;
    $("ann-count").textContent = String(parseInt($("ann-count").textContent || "0", 10) + 1);
    if (ann.idx >= ann.pairs.length) await loadPairs(); else showPair();
    annStatus();
  } catch (e) { showError(e.message); }
}

function openView(open) {
  $("ann-view").classList.toggle("hidden", !open);
  if (open) loadPairs().catch((e) => showError(e.message));
}

// relevance feedback ------------------------------------------------------------------------------------
function decorateCards() {
  const q = state.last && state.last.kind === "id" ? state.last.payload : null;
  if (ann.fbQuery !== q && !(state.last && state.last.response && state.last.response.mode === "feedback")) {
    ann.fbQuery = q;
    ann.marks.clear();
  }
  // item results only: a change search's pair cards (change.js) are not items to mark
  for (const card of document.querySelectorAll("#results .card:not(.pair-card)")) {
    if (card.querySelector(".fb")) continue;
    const id = card.dataset.id;
    const mk = (cls, text, val, title) => el("button", { type: "button", class: `fb ${cls}`, title, onclick: (ev) => {
      ev.stopPropagation();
      ann.marks.get(id) === val ? ann.marks.delete(id) : ann.marks.set(id, val);
      paintMarks();
    } }, text);
    card.querySelector(".meta").append(el("div", { class: "fb-row" },
      mk("fb-rel", "✓ relevant", true, "mark relevant"), mk("fb-non", "✗ not", false, "mark not relevant")));
  }
  $("fb-bar").classList.toggle("hidden", !ann.fbQuery);
  paintMarks();
}

function paintMarks() {
  for (const card of document.querySelectorAll("#results .card")) {
    const v = ann.marks.get(card.dataset.id);
    card.classList.toggle("marked-rel", v === true);
    card.classList.toggle("marked-non", v === false);
  }
  $("fb-again").textContent = `Search again with ${ann.marks.size} mark${ann.marks.size === 1 ? "" : "s"}`;
  $("fb-again").disabled = ann.marks.size === 0 || !ann.fbQuery;
}

async function searchAgain() {
  showError(null);
  const relevant = [...ann.marks].filter(([, v]) => v).map(([id]) => id);
  const notRelevant = [...ann.marks].filter(([, v]) => !v).map(([id]) => id);
  const body = { id: ann.fbQuery, relevant, not_relevant: notRelevant, k: k() };
  try {
    const r = await api("api/feedback/search", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) });
    state.last = { kind: "feedback", payload: ann.fbQuery, response: r };
    render(r);
    if (ann.enabled && annToken()) {
      const s = await api("api/feedback/marks", { method: "POST", headers: authHeaders(), body: JSON.stringify(body) });
      $("fb-info").textContent = `${s.stored} new training pair${s.stored === 1 ? "" : "s"} stored`;
      annStatus();
    } else {
      $("fb-info").textContent = ann.enabled ? "enter the token to keep the marks as training pairs" : "";
    }
  } catch (e) { showError(e.message); }
}

async function initAnnotate() {
  new MutationObserver(decorateCards).observe($("results"), { childList: true });
  $("fb-again").addEventListener("click", searchAgain);
  try {
    await annStatus();
  } catch (_) { return; }  // the server runs without --annotate
  ann.enabled = true;
  $("ann-panel").classList.remove("hidden");
  $("ann-token").value = sessionStorage.getItem("rsir-token") || "";
  $("ann-token").addEventListener("change", () => sessionStorage.setItem("rsir-token", annToken()));
  $("ann-round").addEventListener("click", startRound);
  $("ann-open").addEventListener("click", () => openView($("ann-view").classList.contains("hidden")));
  $("ann-close").addEventListener("click", () => openView(false));
  $("ann-similar").addEventListener("click", () => answer("similar"));
  $("ann-dissimilar").addEventListener("click", () => answer("not_similar"));
  $("ann-skip").addEventListener("click", () => answer("skip"));
  $("ann-labels").addEventListener("change", () => loadPairs().catch((e) => showError(e.message)));
  document.addEventListener("keydown", (ev) => {
    if ($("ann-view").classList.contains("hidden") || ev.target.matches("input, select, textarea")) return;
    if (ev.key === "s") answer("similar");
    else if (ev.key === "d") answer("not_similar");
    else if (ev.key === " ") { ev.preventDefault(); answer("skip"); }
  });
  const s = await annStatus();
  if (s.running_round !== null) pollRound();
}

document.addEventListener("DOMContentLoaded", initAnnotate);
