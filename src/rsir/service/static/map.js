// rsir search page: the map (Leaflet, served by rsir, country outlines from Natural Earth bundled with rsir; no tiles,
// no external requests), footprints of the query and its results in sync with the result cards, and the location
// inputs: a drawn box and a point with a radius, both sent to the search as filters (applied inside the search).
"use strict";

const RsirMap = (() => {
  let map = null, fpLayer = null, geoLayer = null, mode = null, start = null, rubber = null;
  let onChange = () => {}, onPick = () => {};
  const layers = new Map(); // item id -> footprint layer
  const geo = { bbox: null, near: null };
  const RESULT = { color: "#1b3f86", weight: 1, fillColor: "#2860c8", fillOpacity: 0.35 };
  const QUERY = { color: "#e8780c", weight: 2, fillColor: "#e8780c", fillOpacity: 0.45 };
  const HOVER = { color: "#e8780c", weight: 3, fillOpacity: 0.7 };

  function init(changed, picked) {
    onChange = changed; onPick = picked;
    map = L.map("map", { worldCopyJump: true, zoomSnap: 0.25, minZoom: 1 }).setView([30, 10], 2);
    map.attributionControl.setPrefix(false);
    map.attributionControl.addAttribution("Country outlines: Natural Earth (public domain) · Leaflet");
    fpLayer = L.featureGroup().addTo(map);
    geoLayer = L.featureGroup().addTo(map);
    fetch("static/vendor/world-atlas/countries-50m.json").then((r) => r.json()).then((topo) => {
      const countries = topojson.feature(topo, topo.objects.countries);
      for (const f of countries.features) unwrapRings(f.geometry);
      const layer = L.geoJSON(countries, { interactive: false,
        style: { color: "#8a94a6", weight: 0.7, fillColor: "#f6f3ec", fillOpacity: 1 } }).addTo(map);
      layer.bringToBack();
      document.getElementById("map").dataset.countries = String(countries.features.length);
    });
    document.getElementById("draw-box").addEventListener("click", () => setMode(mode === "box" ? null : "box"));
    document.getElementById("near-btn").addEventListener("click", () => setMode(mode === "near" ? null : "near"));
    document.getElementById("clear-geo").addEventListener("click", () => { geo.bbox = null; geo.near = null; drawGeo(); onChange(); });
    document.getElementById("near-km").addEventListener("change", () => {
      if (geo.near) { geo.near[2] = km(); drawGeo(); onChange(); }
    });
    map.on("mousedown", (e) => {
      if (mode !== "box") return;
      start = e.latlng;
      rubber = L.rectangle(L.latLngBounds(start, start), { color: "#c0392b", weight: 2, dashArray: "5 4", fillOpacity: 0.08 }).addTo(map);
    });
    map.on("mousemove", (e) => { if (mode === "box" && start && rubber) rubber.setBounds(L.latLngBounds(start, e.latlng)); });
    map.on("mouseup", (e) => {
      if (mode !== "box" || !start) return;
      const a = start, b = e.latlng;
      start = null;
      if (rubber) { map.removeLayer(rubber); rubber = null; }
      if (Math.abs(a.lat - b.lat) < 1e-6 || Math.abs(a.lng - b.lng) < 1e-6) return;
      // unwrapped longitudes (the map repeats the world): a box over 180° wraps to west > east, which the search
      // reads as crossing the antimeridian
      let w = Math.min(a.lng, b.lng), east = Math.max(a.lng, b.lng);
      if (east - w >= 360) { w = -180; east = 180; } else { w = L.Util.wrapNum(w, [-180, 180], true); east = L.Util.wrapNum(east, [-180, 180], true); }
      geo.bbox = [round(w), round(Math.max(-90, Math.min(a.lat, b.lat))), round(east), round(Math.min(90, Math.max(a.lat, b.lat)))];
      setMode(null); drawGeo(); onChange();
    });
    map.on("click", (e) => {
      if (mode !== "near") return;
      const p = e.latlng.wrap();
      geo.near = [round(p.lng), round(p.lat), km()];
      setMode(null); drawGeo(); onChange();
    });
  }

  // rings that cross the antimeridian (Fiji, Chukotka) jump from +180 to -180: continue them past 180 instead, so
  // Leaflet does not draw a line across the whole map
  function unwrapRings(g) {
    if (!g) return;
    const polys = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
    for (const poly of polys) {
      for (const ring of poly) {
        let off = 0;
        for (let i = 1; i < ring.length; i++) {
          const d = ring[i][0] + off - ring[i - 1][0];
          if (d > 180) off -= 360; else if (d < -180) off += 360;
          ring[i] = [ring[i][0] + off, ring[i][1]];
        }
      }
    }
  }

  function round(v) { return Math.round(v * 1e5) / 1e5; }
  function km() { const v = parseFloat(document.getElementById("near-km").value); return v > 0 ? v : 10; }

  function setMode(m) {
    mode = m;
    const el = document.getElementById("map");
    el.classList.toggle("drawing", m !== null);
    document.getElementById("draw-box").classList.toggle("on", m === "box");
    document.getElementById("near-btn").classList.toggle("on", m === "near");
    if (m === "box") map.dragging.disable(); else map.dragging.enable();
    document.getElementById("map-mode").textContent = m === "box" ? "drag a box on the map"
      : m === "near" ? "click a point on the map" : "";
  }

  function drawGeo() {
    geoLayer.clearLayers();
    const parts = [];
    if (geo.bbox) {
      const [w, s, e, n] = geo.bbox;
      const boxes = w <= e ? [[w, e]] : [[w, 180], [-180, e]];
      for (const [x0, x1] of boxes) {
        L.rectangle([[s, x0], [n, x1]], { color: "#c0392b", weight: 2, dashArray: "5 4", fill: false, interactive: false,
          className: "geo-box" }).addTo(geoLayer);
      }
      parts.push(`in box ${geo.bbox.map((v) => v.toFixed(3)).join(", ")}`);
    }
    if (geo.near) {
      L.circle([geo.near[1], geo.near[0]], { radius: geo.near[2] * 1000, color: "#c0392b", weight: 2, dashArray: "5 4",
        fillOpacity: 0.05, interactive: false, className: "geo-near" }).addTo(geoLayer);
      parts.push(`within ${geo.near[2]} km of ${geo.near[1].toFixed(3)}°, ${geo.near[0].toFixed(3)}°`);
    }
    document.getElementById("geo-filter").textContent = parts.join(" · ") || "anywhere";
    document.getElementById("clear-geo").classList.toggle("hidden", !parts.length);
  }

  function boxOf(it) {
    if (it.bbox) return it.bbox;
    if (it.lon !== null && it.lon !== undefined && it.lat !== null && it.lat !== undefined) return null;
    return undefined;
  }

  function footprint(it, style, cls) {
    const b = boxOf(it);
    if (b === undefined) return null;
    const opts = Object.assign({}, style, { className: cls });
    return b ? L.rectangle([[b[1], b[0]], [b[3], b[2]]], opts)
      : L.circleMarker([it.lat, it.lon], Object.assign(opts, { radius: 6 }));
  }

  function showResults(r) {
    fpLayer.clearLayers();
    layers.clear();
    for (const it of r.results.slice().reverse()) {
      const f = footprint(it, RESULT, "fp");
      if (!f) continue;
      f.bindTooltip(`#${it.rank} ${it.id}`, { sticky: true });
      f.on("mouseover", () => highlight(it.id, true));
      f.on("mouseout", () => highlight(it.id, false));
      f.on("click", () => { if (mode === null) onPick(it.id); });
      f.addTo(fpLayer);
      f.getElement && f.getElement() && f.getElement().setAttribute("data-id", it.id);
      layers.set(it.id, f);
    }
    if (r.mode === "id") {
      const q = footprint(r.query, QUERY, "fp-query");
      if (q) { q.bindTooltip(`query ${r.query.id}`, { sticky: true }); q.addTo(fpLayer); }
    }
    const n = fpLayer.getLayers().length;
    document.getElementById("map-count").textContent = n ? `${layers.size} of ${r.results.length} results have a footprint` : "no footprints";
    if (n) {
      const b = fpLayer.getBounds();
      if (geoLayer.getLayers().length) b.extend(geoLayer.getBounds());
      map.fitBounds(b.pad(0.15), { maxZoom: 14 });
    }
  }

  function highlight(id, on) {
    const f = layers.get(id);
    if (f) { f.setStyle(on ? HOVER : RESULT); if (on) f.bringToFront(); }
    const card = document.querySelector(`#results .card[data-id="${CSS.escape(id)}"]`);
    if (card) card.classList.toggle("hl", on);
  }

  function fitExtent(ext) {
    if (ext && map) map.fitBounds([[ext[1], ext[0]], [ext[3], ext[2]]], { padding: [20, 20], maxZoom: 12 });
  }

  return { init, showResults, highlight, fitExtent, filters: () => geo, _map: () => map };
})();
