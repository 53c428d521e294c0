"""Fill the measured tables of ``docs/results.md`` from the experiments' JSON outputs.

Reads ``runs/table3.json`` (``experiments/table3.py``), ``runs/table4.json``
(``experiments/table4.py``), ``runs/series-out/series_out.json``
(``experiments/series_out.py``) and the default model's test evaluation
``runs/eval-test-xdefect/metrics.json`` (``xdefect evaluate --split test``); rewrites the
blocks between ``<!-- name -->`` and ``<!-- /name -->`` markers of the report (``table3``,
``table4``, ``seriesout``, ``errors``) and copies the PR curve of the test evaluation to
``docs/img/pr_curve_even.png`` (a plot: no GDXray pixels). The ``bundled`` block comes from
the model cards (``experiments/model_figures.py``, run here too). The prose around the
blocks is written by hand.

    .venv/bin/python experiments/results_tables.py [--report docs/results.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import model_figures  # experiments/, beside this script


def _f(x, nd: int = 4) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def table3(doc: dict) -> str:
    lines = ["| arch | train acc | test acc (real C0001) | paper train | paper test | "
             "patches seen | seconds |", "|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        lines.append(f"| {r['arch']} | {_f(r['train_acc'])} | {_f(r['test_acc'])} | "
                     f"{_f(r['paper_train_acc'])} | {_f(r['paper_test_acc'])} | "
                     f"{r['patches_seen']:,} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def table4(doc: dict) -> str:
    lines = ["| dataset | train acc | val acc | AP (even) | AP11 | TP / FP / missed | "
             "paper train | paper val | paper mAP |", "|---|---|---|---|---|---|---|---|---|"]
    order = ["E100G000*", "E100G000", "E075G025", "E050G050", "E025G075", "E000G100"]
    rows = sorted(doc["rows"], key=lambda r: order.index(r["dataset"]))
    for r in rows:
        ap = _f(r["ap"])
        if "ap_mean_of_series" in r:
            ap += f" (mean of series {_f(r['ap_mean_of_series'])})"
        lines.append(f"| {r['dataset']} | {_f(r['train_acc'])} | {_f(r['val_acc'])} | {ap} | "
                     f"{_f(r['ap11'])} | {r['true_positives']} / {r['false_positives']} / "
                     f"{r['missed']} | {_f(r['paper_train_acc'])} | {_f(r['paper_val_acc'])} | "
                     f"{_f(r['paper_ap'])} |")
    series = sorted({s for r in rows for s in r["per_series_ap"]})
    lines += ["", "AP per series (even images):", "",
              "| dataset | " + " | ".join(series) + " |",
              "|---|" + "---|" * len(series)]
    for r in rows:
        lines.append(f"| {r['dataset']} | " + " | ".join(_f(r["per_series_ap"].get(s))
                                                       for s in series) + " |")
    return "\n".join(lines)


def errors(m: dict) -> str:
    lines = ["| series | images | boxes | AP | AP11 | found | missed | false alarms | "
             "false alarms / image | recall at 1 FP/image |", "|---" * 10 + "|"]
    for s, v in m["per_series"].items():
        r1 = v["recall_at_fppi"]["1.0"]
        lines.append(f"| {s} | {v['images']} | {v['gt_boxes']} | {_f(v['ap'])} | {_f(v['ap11'])} "
                     f"| {v['true_positives']} | {v['missed']} | {v['false_positives']} | "
                     f"{v['false_positives'] / max(v['images'], 1):.1f} | {_f(r1, 3)} |")
    lines.append(f"| all | {m['images']} | {m['gt_boxes']} | {_f(m['ap'])} | {_f(m['ap11'])} | "
                 f"{m['true_positives']} | {m['missed']} | {m['false_positives']} | "
                 f"{m['false_positives'] / max(m['images'], 1):.1f} | "
                 f"{_f(m['recall_at_fppi']['1.0'], 3)} |")
    return "\n".join(lines)


def series_out(doc: dict) -> str:
    """The leave-one-series-out table (``experiments/series_out.py``)."""
    a = doc["arguments"]
    lines = [f"Each fold: a model trained from scratch on `wholeimage` patches of the other "
             f"series' train images ({a['per_image']} + {a['per_image']} per image, mu "
             f"{a['mu'][0]}-{a['mu'][1]}, real windows {a['real']}), {a['epochs']} epochs of "
             f"{a['samples_per_epoch']:,} patches; tested on every image of the held-out "
             f"series with `{doc['params_from']}`'s detection settings "
             f"({doc['detection']['mode']} mode, stride {doc['detection']['stride']}, theta "
             f"{doc['detection']['theta']}).", "",
             "| held-out series | images | boxes | AP | found | missed | false alarms / image "
             "| build s | train s | test s |", "|---" * 10 + "|"]
    for s, v in doc["per_series"].items():
        lines.append(f"| {s} | {v['images']} | {v['gt_boxes']} | {_f(v['ap'])} | "
                     f"{v['true_positives']} | {v['missed']} | "
                     f"{v['false_alarms_per_image']:.1f} | {v['build_s']:.0f} | "
                     f"{v['train_s']:.0f} | {v['test_s']:.0f} |")
    p = doc["pooled"]
    lines.append(f"| **pooled** | {p['images']} | {p['gt_boxes']} | **{_f(p['ap'])}** | "
                 f"{p['true_positives']} | {p['missed']} | "
                 f"{doc['false_alarms_per_image']:.1f} | | | |")
    lines += ["", f"Total {doc['seconds_total'] / 60:.0f} minutes on this machine. Command: "
              f"`{doc['command']}`"]
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str, where: Path) -> str:
    """Rewrite the ``<!-- name -->`` ... ``<!-- /name -->`` block of the report."""
    return model_figures.replace_block(text, f"<!-- {name} -->", f"<!-- /{name} -->", body,
                                       where)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", type=Path, default=Path("docs/results.md"))
    ap.add_argument("--table3", type=Path, default=Path("runs/table3.json"))
    ap.add_argument("--table4", type=Path, default=Path("runs/table4.json"))
    ap.add_argument("--eval", type=Path, default=Path("runs/eval-test-xdefect"))
    ap.add_argument("--series-out", type=Path, default=Path("runs/series-out/series_out.json"))
    a = ap.parse_args()
    text = a.report.read_text()
    if a.table3.exists():
        text = replace_block(text, "table3", table3(json.loads(a.table3.read_text())),
                             a.report)
    if a.table4.exists():
        text = replace_block(text, "table4", table4(json.loads(a.table4.read_text())),
                             a.report)
    if a.series_out.exists():
        text = replace_block(text, "seriesout", series_out(json.loads(a.series_out.read_text())),
                             a.report)
    if (a.eval / "metrics.json").exists():
        text = replace_block(text, "errors",
                             errors(json.loads((a.eval / "metrics.json").read_text())), a.report)
        img = a.report.parent / "img" / "pr_curve_even.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(a.eval / "pr_curve.png", img)
    a.report.write_text(text)
    print(f"{a.report}: tables updated")
    print(model_figures.status(model_figures.update()))


if __name__ == "__main__":
    main()
