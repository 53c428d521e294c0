"""The speed figures in README.md, generated from ``bench/results.jsonl``.

The block between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` shows, for each
benchmark, its latest row in ``bench/results.jsonl`` (what ``make bench`` appends: commit,
date, machine, figures); nothing is typed by hand. ``--check`` exits 1 when the block
differs from what the results give (a test runs it), otherwise the block is rewritten::

    .venv/bin/python experiments/bench_figures.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys

from model_figures import README, ROOT, replace_block

RESULTS = ROOT / "bench" / "results.jsonl"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def latest() -> dict[str, dict]:
    """The last row of each benchmark."""
    out: dict[str, dict] = {}
    if RESULTS.is_file():
        for line in RESULTS.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                out[row["bench"]] = row
    return out


def _train(f: dict) -> str:
    raw = f.get("raw_patches_per_s_by_setting") or f["raw_patches_per_s"]
    return (f"training step {raw['float32_channels_last']:,.0f} patches/s (float32, "
            f"channels_last) against {raw['float32']:,.0f} (the old default layout): "
            f"{f['raw_speedup']:.2f}x; the real loop {f['loop_patches_per_s']:,.0f} patches/s, "
            f"{f['loop_speedup']:.2f}x the old loop; bfloat16 "
            f"{'native' if f['bf16_native'] else 'emulated here'}: "
            f"{raw['bfloat16_channels_last']:,.0f} patches/s"
            + (f"; convolutions {f['conv_share_of_step']:.0%} of the step: with all else free "
               f"the step would reach {f['conv_only_speedup_ceiling']:.2f}x"
               if "conv_share_of_step" in f else ""))


def _detect(f: dict) -> str:
    s = f["s_per_image"]
    seg = f.get("segmenter") or {}
    views = f", {seg['tta']} mirror views" if seg.get("tta", 1) > 1 else ""
    return ((f"per 572x768 image: the default model `{seg['model']}` ({seg['mode']} mode"
             f"{views}) "
             f"{seg['s_per_image']:.2f} s, on ONNX Runtime {seg['onnxruntime_s_per_image']:.2f} s "
             f"(scores within {seg['onnxruntime_max_abs_score_diff']:.0e}); "
             "the patch classifier " if "s_per_image" in seg else
             "per 572x768 image: the bundled default ")
            + f"({f['default_mode']} mode, stride "
            f"{f['default_stride']}) {f['default_s_per_image']:.2f} s; patch mode "
            f"{s['patch_stride8']:.2f} s at stride 8 ({f['patch_speedup_vs_reference']:.1f}x "
            f"the old patch mode's {f['reference_patch_s_per_image']['stride8']:.2f} s), "
            f"{s['patch_stride4']:.2f} s at stride 4; dense mode {s['dense_stride8']:.2f} s / "
            f"{s['dense_stride4']:.2f} s"
            + (f"; the classifier with plain convolutions instead of Winograd's "
               f"{f['default_plain_conv_s_per_image']:.2f} s (scores within "
               f"{f['winograd_max_abs_score_diff']:.0e})"
               if "default_plain_conv_s_per_image" in f else "")
            + (f"; the classifier on ONNX Runtime {f['onnxruntime_default_s_per_image']:.2f} s "
               f"(scores within {f['onnxruntime_max_abs_score_diff']:.0e})"
               if "onnxruntime_default_s_per_image" in f else ""))


def _dataset(f: dict) -> str:
    return (f"{f['patches_per_s']:,.0f} patches/s; the full 640,000-patch build projected "
            f"at {f['projected_minutes_640k']:.1f} min")


def _simulate(f: dict) -> str:
    return (f"{f['ms_per_defect_image']:.3f} ms per defect on a whole image, "
            f"{f['speedup_image']:,.0f}x the per-pixel reference")


SUMMARY = {"train": _train, "detect": _detect, "dataset": _dataset, "simulate": _simulate}


def block(rows: dict[str, dict]) -> str:
    if not rows:
        return "No benchmark recorded yet (`make bench`)."
    lines = ["| benchmark | figures | commit, date |", "|---|---|---|"]
    for name in sorted(rows):
        r = rows[name]
        fn = SUMMARY.get(name)
        text = fn(r["figures"]) if fn else json.dumps(r["figures"])[:200]
        lines.append(f"| `bench/{name}.py` | {text} | {r['commit']}, {r['date'][:10]} |")
    machine = {r["machine"] for r in rows.values()}
    lines.append("")
    lines.append(f"Machine: {'; '.join(sorted(machine))}. Every row is the latest of "
                 "`bench/results.jsonl`; each benchmark measures its reference in the same run.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="report a stale block, write nothing")
    a = ap.parse_args()
    old = README.read_text()
    new = replace_block(old, BEGIN, END, block(latest()), README)
    if new == old:
        print("bench figures up to date")
        return
    if a.check:
        print(f"{README}: the bench block is stale (run experiments/bench_figures.py)")
        sys.exit(1)
    README.write_text(new)
    print(f"bench figures rewritten in {README}")


if __name__ == "__main__":
    main()
