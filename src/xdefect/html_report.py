"""A browsable evaluation report: one self-contained ``report.html`` beside ``metrics.json``.

What a reviewer would rather see than a table: the headline figures, the PR curve, the
per-series table, and a thumbnail of every image with its detections and ground truth,
where each thumbnail marks what went wrong and opens the full overlay. Pictures are drawn
in the overlay convention (detections green, ground truth red) with the errors set apart:

* a **false alarm** (a detection that matched no box) is drawn **yellow**;
* a **missed** defect (a ground-truth box no detection matched) is drawn **magenta**, thick.

The grid can be filtered by series and by "images with errors", and sorted by name, by
misses or by false alarms (a few lines of inline JavaScript; no network, no external
file but the full-size overlays it links to). Thumbnails and the PR curve are embedded as
base64 PNG/JPEG, so the page stands alone; ``overlays/STEM.png`` beside it are the full
pictures. Matching uses :func:`xdefect.evaluate.match_image` with the evaluation's IoU and
rule, so the marks agree with ``metrics.json``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from xdefect.evaluate import ImageResult, match_image
from xdefect.report import GREEN, RED, draw_boxes, to_rgb

__all__ = ["FALSE_ALARM", "MISSED", "ImageErrors", "image_errors", "marked_overlay",
           "render_report", "thumbnail_uri"]

FALSE_ALARM = (255, 220, 0)
MISSED = (255, 0, 255)


@dataclass(frozen=True)
class ImageErrors:
    """One image's outcome: detections matched (``tp``) or not, boxes found or missed."""

    tp: np.ndarray
    missed: np.ndarray

    @property
    def false_alarms(self) -> int:
        return int((~self.tp).sum())

    @property
    def misses(self) -> int:
        return int(self.missed.sum())


def image_errors(r: ImageResult, iou: float = 0.5, matching: str = "coco") -> ImageErrors:
    """Which detections of ``r`` are false alarms and which of its boxes were missed."""
    boxes = np.asarray(r.boxes, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(r.gt, dtype=np.float64).reshape(-1, 4)
    tp, which = match_image(boxes, np.asarray(r.scores), gt, iou, matching)
    found = np.zeros(len(gt), bool)
    found[which[tp]] = True
    return ImageErrors(np.asarray(tp, bool), ~found)


def marked_overlay(image: np.ndarray, r: ImageResult, err: ImageErrors,
                   thickness: int = 2) -> np.ndarray:
    """The overlay with the errors marked: found boxes red, missed magenta (thick), true
    detections green, false alarms yellow."""
    rgb = to_rgb(image)
    gt = np.asarray(r.gt, dtype=np.float64).reshape(-1, 4)
    boxes = np.asarray(r.boxes, dtype=np.float64).reshape(-1, 4)
    draw_boxes(rgb, gt[~err.missed], RED, thickness)
    draw_boxes(rgb, gt[err.missed], MISSED, thickness + 1)
    draw_boxes(rgb, boxes[err.tp], GREEN, thickness)
    draw_boxes(rgb, boxes[~err.tp], FALSE_ALARM, thickness)
    return rgb


def thumbnail_uri(rgb: np.ndarray, width: int = 256) -> str:
    """A ``data:`` URI of an RGB picture scaled to ``width`` pixels (JPEG)."""
    im = Image.fromarray(rgb)
    im.thumbnail((width, width * 4))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _png_uri(path_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(path_bytes).decode("ascii")


def _fmt(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else (
        f"{v:.4f}" if isinstance(v, float) else str(v))


def _series_table(m: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(s)}</td><td>{d['images']}</td><td>{d['gt_boxes']}</td>"
        f"<td>{_fmt(d['ap'])}</td><td>{d['true_positives']}</td><td>{d['missed']}</td>"
        f"<td>{d['false_positives']}</td></tr>" for s, d in m["per_series"].items())
    return ("<table><tr><th>series</th><th>images</th><th>boxes</th><th>AP</th>"
            "<th>found</th><th>missed</th><th>false alarms</th></tr>" + rows
            + f"<tr class='all'><td>all</td><td>{m['images']}</td><td>{m['gt_boxes']}</td>"
            f"<td>{_fmt(m['ap'])}</td><td>{m['true_positives']}</td><td>{m['missed']}</td>"
            f"<td>{m['false_positives']}</td></tr></table>")


_SCRIPT = """
function apply() {
  const s = document.getElementById('series').value;
  const e = document.getElementById('errors').checked;
  const key = document.getElementById('sort').value;
  const grid = document.getElementById('grid');
  const cards = Array.from(grid.children);
  cards.sort((a, b) => key === 'name' ? a.dataset.name.localeCompare(b.dataset.name)
                                      : Number(b.dataset[key]) - Number(a.dataset[key]));
  for (const c of cards) {
    const show = (s === 'all' || c.dataset.series === s) &&
                 (!e || Number(c.dataset.misses) + Number(c.dataset.alarms) > 0);
    c.style.display = show ? '' : 'none';
    grid.appendChild(c);
  }
  document.getElementById('shown').textContent =
    cards.filter(c => c.style.display !== 'none').length;
}
"""

_STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222} table{border-collapse:collapse}
td,th{border:1px solid #bbb;padding:2px 8px;text-align:right} tr.all{font-weight:bold}
#grid{display:flex;flex-wrap:wrap;gap:8px} .card{width:260px;font-size:12px}
.card img{width:256px;border:1px solid #999} .bad{color:#a00}
.key span{display:inline-block;width:14px;height:10px;margin:0 4px 0 12px}
"""


def render_report(metrics: dict[str, Any], cards: list[dict[str, Any]],
                  pr_png: bytes | None, title: str = "xdefect evaluation") -> str:
    """The page: ``cards`` are ``{"stem", "series", "misses", "alarms", "found",
    "boxes", "thumb" (data URI), "href" (full overlay, relative)}``."""
    series = sorted({c["series"] for c in cards})
    opts = "".join(f"<option>{html.escape(s)}</option>" for s in series)
    grid = "".join(
        f"<div class='card' data-name='{html.escape(c['stem'])}' "
        f"data-series='{html.escape(c['series'])}' data-misses='{c['misses']}' "
        f"data-alarms='{c['alarms']}'><a href='{html.escape(c['href'])}'>"
        f"<img src='{c['thumb']}' alt='{html.escape(c['stem'])}'></a><br>"
        f"{html.escape(c['stem'])}: found {c['found']}/{c['boxes']}"
        + (f", <span class='bad'>{c['misses']} missed</span>" if c["misses"] else "")
        + (f", <span class='bad'>{c['alarms']} false alarms</span>" if c["alarms"] else "")
        + "</div>" for c in cards)
    r = metrics.get("recall_at_fppi", {})
    head = (f"<p>AP {_fmt(metrics['ap'])} (11-point {_fmt(metrics.get('ap11'))}, COCO "
            f"101-point {_fmt(metrics.get('ap101'))}) at IoU {metrics.get('iou')} over "
            f"{metrics['images']} {html.escape(str(metrics.get('split', '')))} images; "
            f"recall at 1 / 2 false alarms per image {_fmt(r.get('1.0'))} / "
            f"{_fmt(r.get('2.0'))}. Model: {html.escape(str(metrics.get('model', '')))}</p>")
    pr = (f"<img src='{_png_uri(pr_png)}' alt='PR curve' style='max-width:520px'>"
          if pr_png else "")
    key = ("<p class='key'>Key:<span style='background:#0f0'></span>detection"
           "<span style='background:#ff0'></span>false alarm"
           "<span style='background:#f00'></span>defect found"
           "<span style='background:#f0f'></span>defect missed</p>")
    controls = ("<p>Series <select id='series' onchange='apply()'><option>all</option>"
                f"{opts}</select> <label><input type='checkbox' id='errors' "
                "onchange='apply()'> only images with errors</label> Sort by <select "
                "id='sort' onchange='apply()'><option value='name'>name</option>"
                "<option value='misses'>misses</option><option value='alarms'>false "
                "alarms</option></select> (<span id='shown'></span> shown)</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{head}{pr}<h2>Per series</h2>{_series_table(metrics)}<h2>Images</h2>{key}"
            f"{controls}<div id='grid'>{grid}</div><script>{_SCRIPT}apply();</script>"
            f"<script type='application/json' id='metrics'>"
            f"{html.escape(json.dumps({k: metrics[k] for k in ('ap', 'images')}))}"
            "</script></body></html>")
