"""The bundled models' figures in README.md and docs/results.md, generated from their cards.

Every number in the blocks between ``<!-- models:begin -->`` and ``<!-- models:end -->``
(README) and ``<!-- bundled -->`` / ``<!-- /bundled -->`` (docs/results.md) comes from
``src/xdefect/weights/*.json``; nothing is typed by hand. ``--check`` exits 1 when a
block differs from what the cards give (a test runs it), otherwise the blocks are
rewritten::

    .venv/bin/python experiments/model_figures.py [--check]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from xdefect.checkpoint import BUNDLED, DEFAULT_MODEL, bundled_model, lineage_summary, read_card

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results.md"


def _f(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def cards() -> dict[str, dict]:
    """The installed bundled models' cards, default first."""
    out = {}
    for name in sorted(BUNDLED, key=lambda n: (n != DEFAULT_MODEL, n)):
        p = bundled_model(name)
        if p is not None:
            out[name] = read_card(p)
    return out


def _trained_on(card: dict) -> str:
    s = lineage_summary(card)
    if card["arch"].get("family") == "segmenter":
        real = "per-pixel masks: real defects' inscribed ellipses, " if s["real_defects"] else ""
        rounds = (card.get("train_config") or {}).get("hard_rounds", 0)
        hard = f", crops on its own false alarms ({rounds} rounds)" if rounds else ""
        return (f"{real}simulated voids{hard}; {', '.join(s['image_splits'] or ['?'])} "
                f"images of {len(s['series'])} series")
    real = "real defect windows and hard negatives, " if s["real_defects"] else ""
    return (f"{real}simulated defects; {', '.join(s['image_splits'] or ['?'])} images of "
            f"{len(s['series'])} series; {s['stages']} stage(s)")


def readme_block(cs: dict[str, dict]) -> str:
    """Markdown: one row per bundled model, then the per-series test AP."""
    if not cs:
        return "No bundled model is installed."
    lines = ["| model | trained on | tuning AP | **test AP** | unseen-defect AP | "
             "false alarms / test image |", "|---|---|---|---|---|---|"]
    series: list[str] = []
    for name, c in cs.items():
        t = c.get("test_even") or {}
        u = t.get("unseen") or {}
        tune = (c.get("detection_tuning") or {}).get("best_metrics") or {}
        default = " (default)" if name == DEFAULT_MODEL else ""
        fa = (t["false_positives"] / t["images"]) if t.get("images") else None
        n = (c.get("detection_tuning") or {}).get("images")
        lines.append(f"| `{name}`{default} | {_trained_on(c)} | {_f(tune.get('ap'))}"
                     + (f" ({n} images)" if n else "") + " | "
                     f"**{_f(t.get('ap'))}** ({t.get('gt_boxes', '-')} boxes) | "
                     f"{_f(u.get('ap'))} ({u.get('gt_boxes', '-')} boxes) | {_f(fa, 1)} |")
        series += [s for s in t.get("per_series", {}) if s not in series]
    lines += ["", "Test AP per series (unseen-defect AP in brackets; '-' where no box is "
              "unseen):", "", "| model | " + " | ".join(series) + " |",
              "|---|" + "---|" * len(series)]
    for name, c in cs.items():
        t = c.get("test_even") or {}
        ps = t.get("per_series", {})
        us = (t.get("unseen") or {}).get("per_series", {})
        lines.append(f"| `{name}` | " + " | ".join(
            f"{_f(ps.get(s, {}).get('ap'))} ({_f(us.get(s, {}).get('ap'))})" for s in series)
            + " |")
    any_t = next((c["test_even"] for c in cs.values() if c.get("test_even")), None)
    if any_t:
        lines += ["", f"Test images: the {any_t['images']} even-numbered images of "
                  f"{', '.join(any_t.get('series') or [])} with ground truth "
                  f"(unscored: {', '.join(any_t.get('unscored_series') or []) or 'none'}), "
                  f"IoU {any_t['iou']}, {any_t.get('matching', 'coco')} matching, all-point "
                  "AP. The paper reports 0.7102 for its E100/G000 model."]
    def roots(c: dict) -> list[str]:  # one root (a string) or several (a list)
        g = (c.get("detection_tuning") or {}).get("gdxray") or []
        return [g] if isinstance(g, str) else list(g)

    wider = {n: roots(c) for n, c in cs.items() if len(roots(c)) > 1}
    if wider:
        lines += ["", "Tuning AP is on the images that chose each model's detection settings: "
                  "the paper series' tuning images, and for "
                  + ", ".join(f"`{n}` those of {', '.join(f'`{r}`' for r in roots)}"
                              for n, roots in wider.items()) + "."]
    return "\n".join(lines)


def results_block(cs: dict[str, dict]) -> str:
    """Markdown for docs/results.md: training, tuning and test figures of each model."""
    if not cs:
        return "No bundled model is installed."
    lines = ["| | " + " | ".join(f"`{n}`" for n in cs) + " |", "|---|" + "---|" * len(cs)]

    def row(label: str, fn) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(c) for c in cs.values()) + " |")

    row("trained on", _trained_on)
    row("training", lambda c: (
        f"{c['training']['steps']} steps ({c['training']['crops_seen']} crops), "
        f"{c['training']['minutes']:.0f} min" if "steps" in c["training"] else
        f"{c['training']['epochs_run']} epochs, best {c['epoch']}, "
        f"{c['training']['seconds_total'] / 60:.0f} min"))
    row("patch hold-out accuracy", lambda c: _f(c["metrics"]["val_acc"], 4)
        if "metrics" in c else "- (segmenter)")
    row("detection settings (chosen on the tuning images)",
        lambda c: ", ".join(f"{k} {v}" for k, v in c["detection"].items()))
    row("tuning AP", lambda c: f"{_f(c['detection_tuning']['best_metrics']['ap'])} "
        f"({c['detection_tuning']['images']} images"
        + (f", {c['detection_tuning']['gt_boxes']} boxes)"
           if c["detection_tuning"].get("gt_boxes") else ")"))
    row("**test AP**", lambda c: f"**{_f(c['test_even']['ap'])}** (11-point "
        f"{_f(c['test_even']['ap11'])})" if c.get("test_even") else "-")
    row("unseen-defect AP", lambda c: f"{_f(c['test_even']['unseen']['ap'])} "
        f"({c['test_even']['unseen']['gt_boxes']} of {c['test_even']['gt_boxes']} boxes)"
        if (c.get("test_even") or {}).get("unseen") else "-")
    row("detections", lambda c: f"{c['test_even']['true_positives']} true, "
        f"{c['test_even']['false_positives']} false, {c['test_even']['missed']} missed"
        if c.get("test_even") else "-")
    row("recall at 1 false alarm / image", lambda c: _f(
        c["test_even"]["recall_at_fppi"]["1.0"]) if c.get("test_even") else "-")
    return "\n".join(lines)


def replace_block(text: str, begin: str, end: str, body: str, where: Path) -> str:
    """``text`` with the lines between the ``begin`` and ``end`` marker lines replaced by
    ``body``; exits naming ``where`` when the markers are missing."""
    pat = re.compile(rf"({re.escape(begin)}\n).*?({re.escape(end)})", re.S)
    if not pat.search(text):
        raise SystemExit(f"{where}: no {begin} ... {end} block")
    return pat.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def update(check: bool = False) -> list[Path]:
    """Regenerate both blocks from the cards; returns the files whose block was stale
    (with ``check``, only reports them, writing nothing)."""
    cs = cards()
    targets = [(README, "<!-- models:begin -->", "<!-- models:end -->", readme_block(cs)),
               (RESULTS, "<!-- bundled -->", "<!-- /bundled -->", results_block(cs))]
    stale = []
    for path, begin, end, body in targets:
        old = path.read_text()
        new = replace_block(old, begin, end, body, path)
        if new != old:
            stale.append(path)
            if not check:
                path.write_text(new)
    return stale


def status(stale: list[Path]) -> str:
    """One line saying what :func:`update` did."""
    return "model figures " + ("up to date" if not stale else
                               "rewritten in " + ", ".join(str(p) for p in stale))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 when the README or results blocks differ from the cards")
    a = ap.parse_args()
    stale = update(a.check)
    if a.check and stale:
        print(f"stale model figures in {', '.join(str(p) for p in stale)}: run "
              "experiments/model_figures.py", file=sys.stderr)
        sys.exit(1)
    print(status(stale))


if __name__ == "__main__":
    main()
