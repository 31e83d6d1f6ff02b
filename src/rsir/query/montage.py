"""A result montage: the query and its top k as true-colour quicklooks in a grid, as retrieval papers show them.

The first tile is the query (orange frame; an archive item's or an upload's quicklook, or the sentence of a text
query); then one tile per hit in rank order, captioned with its rank, distance, id and labels. A hit that shares
a label with the query is framed green, one that shares none red, and one whose relevance is unknown (a query
without labels) grey. Quicklooks are the archive's (Sentinel-2 B04/B03/B02 with a 2-98 % stretch, Sentinel-1
VV/VH/ratio), enlarged with nearest-neighbour sampling so pixels stay visible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir.data.bands import png_bytes

if TYPE_CHECKING:
    from rsir.query.engine import Results, SearchEngine

QUERY = (232, 120, 12)
RELEVANT = (42, 157, 85)
IRRELEVANT = (192, 57, 43)
UNKNOWN = (150, 150, 150)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _fit_middle(draw: Any, text: str, font: Any, width: int) -> str:
    """``text`` shortened in the middle (ids differ in their ends: tile, row, column)."""
    if draw.textlength(text, font=font) <= width:
        return text
    head, tail = text[: len(text) // 2], text[len(text) // 2:]
    while head and tail and draw.textlength(head + "…" + tail, font=font) > width:
        head, tail = head[:-1], tail[1:] if len(tail) > len(head) else tail
        if draw.textlength(head + "…" + tail, font=font) > width:
            tail = tail[1:]
    return head + "…" + tail


def _wrap(draw: Any, words: list[str], font: Any, width: int, lines: int) -> list[str]:
    out: list[str] = []
    cur = ""
    for w in words:
        cand = f"{cur}, {w}" if cur else w
        if draw.textlength(cand, font=font) <= width or not cur:
            cur = cand
        else:
            out.append(cur)
            cur = w
    if cur:
        out.append(cur)
    if len(out) > lines:
        out = out[:lines]
        out[-1] = _fit(draw, out[-1] + " …", font, width)
    return [_fit(draw, s, font, width) for s in out]


def render_montage(query_rgb: np.ndarray | None, query_title: str, query_labels: list[str],
                   tiles: list[tuple[np.ndarray, str, str, list[str], bool | None]], cols: int = 6,
                   tile: int = 150, text: str | None = None) -> np.ndarray:
    """The montage as an H x W x 3 uint8 array; ``tiles`` = (rgb, title line, id, labels, shares_label)."""
    from PIL import Image, ImageDraw

    n = 1 + len(tiles)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    pad, frame, cap = 8, 5, 58
    cw, ch = tile + 2 * frame, tile + 2 * frame + cap
    img = Image.new("RGB", (pad + cols * (cw + pad), pad + rows * (ch + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    f_big, f_small = _font(13), _font(11)

    def cell(i: int, rgb: np.ndarray | None, colour: tuple[int, int, int], head: str, sub: str,
             labels: list[str], body: str | None = None) -> None:
        x, y = pad + (i % cols) * (cw + pad), pad + (i // cols) * (ch + pad)
        draw.rectangle([x, y, x + cw - 1, y + tile + 2 * frame - 1], fill=colour)
        if rgb is not None:
            q = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).resize((tile, tile), Image.Resampling.NEAREST)
            img.paste(q, (x + frame, y + frame))
        else:
            draw.rectangle([x + frame, y + frame, x + frame + tile - 1, y + frame + tile - 1], fill=(250, 246, 238))
            for j, line in enumerate(_wrap(draw, (body or "").split(" "), f_big, tile - 10, 8)):
                draw.text((x + frame + 5, y + frame + 5 + 16 * j), line.replace(", ", " "), fill=(40, 40, 40),
                          font=f_big)
        ty = y + tile + 2 * frame + 2
        draw.text((x, ty), _fit(draw, head, f_big, cw), fill=colour if colour != UNKNOWN else (60, 60, 60),
                  font=f_big)
        draw.text((x, ty + 16), _fit_middle(draw, sub, f_small, cw), fill=(60, 60, 60), font=f_small)
        for j, line in enumerate(_wrap(draw, labels, f_small, cw, 2)):
            draw.text((x, ty + 30 + 13 * j), line, fill=(90, 90, 90), font=f_small)

    cell(0, query_rgb, QUERY, "query", query_title, query_labels, text)
    for i, (rgb, head, iid, labels, shares) in enumerate(tiles, start=1):
        colour = UNKNOWN if shares is None else RELEVANT if shares else IRRELEVANT
        cell(i, rgb, colour, head, iid, labels)
    return np.asarray(img)


def results_montage(engine: SearchEngine, results: Results, query_rgb: np.ndarray | None = None,
                    cols: int = 6, tile: int = 150,
                    quicklook: Callable[[int], np.ndarray] | None = None, max_tiles: int | None = None) -> bytes:
    """PNG bytes of the montage of ``results`` (the query's quicklook from the archive for id queries, else
    ``query_rgb``; a text query shows its sentence); at most ``max_tiles`` results are drawn."""
    ql = quicklook or (lambda p: engine.quicklook(p))
    q = results.query
    text = None
    if results.mode == "id":
        query_rgb = ql(engine.position(str(q["id"])))
        title = str(q["id"])
    elif results.mode == "label-match":
        text = f"“{q.get('text', '')}”"
        title = "text query"
    else:
        title = str(q.get("filename") or results.mode)
    tiles = []
    for h in results.hits[:max_tiles]:
        d = h.distance
        dist = ("" if d is None else f"d={d}" if isinstance(d, int) else f"{results.metric}={d:.3f}")
        tiles.append((ql(h.position), f"#{h.rank}  {dist}".strip(), h.id, list(h.labels), h.shares_label))
    return png_bytes(render_montage(query_rgb, title, list(q.get("labels") or []), tiles, cols, tile, text))
