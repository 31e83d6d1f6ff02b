// rsir search page: the code map (t-SNE of the indexed codes from GET api/codemap) drawn on a canvas, coloured by
// each item's rarest label, with the query placed on it as a star.
"use strict";

const RsirCodemap = (() => {
  // matplotlib's tab20, as rsir eval's codemap.png uses it
  const PALETTE = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd",
    "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5"];
  let data = null, query = null, scale = null, onPick = () => {};

  async function load(api, picked) {
    onPick = picked;
    data = await api("api/codemap");
    const shown = [...new Set(data.points.map((p) => p.c))].filter((c) => c >= 0).sort((a, b) => a - b);
    data.colour = new Map(shown.map((c, j) => [c, PALETTE[j % PALETTE.length]]));
    const legend = document.getElementById("codemap-legend");
    legend.replaceChildren(...shown.map((c) => {
      const s = document.createElement("span");
      const dot = document.createElement("i");
      dot.style.background = data.colour.get(c);
      s.append(dot, `${data.classes[c]} (${data.points.filter((p) => p.c === c).length})`);
      return s;
    }));
    document.getElementById("codemap-info").textContent =
      `${data.n} codes, ${data.metric} metric, fitted in ${data.seconds} s`;
    const cv = document.getElementById("codemap");
    cv.onclick = (ev) => {
      if (!scale) return;
      const r = cv.getBoundingClientRect();
      const x = (ev.clientX - r.left) * cv.width / r.width, y = (ev.clientY - r.top) * cv.height / r.height;
      let best = null, bd = 1e9;
      for (const p of data.points) {
        const d = Math.hypot(scale.x(p.x) - x, scale.y(p.y) - y);
        if (d < bd) { bd = d; best = p; }
      }
      if (best && bd < 12) onPick(best.id);
    };
    draw();
    return data;
  }

  function place(xy) { query = xy || null; draw(); }

  function draw() {
    if (!data) return;
    const cv = document.getElementById("codemap");
    const ctx = cv.getContext("2d");
    const W = cv.width, H = cv.height, pad = 18;
    const xs = data.points.map((p) => p.x).concat(query ? [query[0]] : []);
    const ys = data.points.map((p) => p.y).concat(query ? [query[1]] : []);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const s = Math.min((W - 2 * pad) / Math.max(1e-9, x1 - x0), (H - 2 * pad) / Math.max(1e-9, y1 - y0));
    scale = { x: (v) => pad + (v - x0) * s + (W - 2 * pad - (x1 - x0) * s) / 2,
      y: (v) => H - pad - (v - y0) * s - (H - 2 * pad - (y1 - y0) * s) / 2 };
    ctx.clearRect(0, 0, W, H);
    for (const p of data.points) {
      ctx.fillStyle = p.c >= 0 ? data.colour.get(p.c) : "#bbbbbb";
      ctx.beginPath(); ctx.arc(scale.x(p.x), scale.y(p.y), 3, 0, 2 * Math.PI); ctx.fill();
    }
    if (query) star(ctx, scale.x(query[0]), scale.y(query[1]));
    cv.dataset.query = query ? `${query[0].toFixed(3)},${query[1].toFixed(3)}` : "";
  }

  function star(ctx, x, y) {
    ctx.beginPath();
    for (let i = 0; i < 10; i++) {
      const r = i % 2 ? 5 : 13, a = -Math.PI / 2 + i * Math.PI / 5;
      ctx.lineTo(x + r * Math.cos(a), y + r * Math.sin(a));
    }
    ctx.closePath();
    ctx.fillStyle = "#e8780c"; ctx.strokeStyle = "#000"; ctx.lineWidth = 1.2; ctx.fill(); ctx.stroke();
  }

  return { load, place, loaded: () => data !== null };
})();
