"""``xdefect models list|show|ensemble``: the architecture registry, model cards, and
ensembles of segmenter files."""

from __future__ import annotations

import argparse
import json
from typing import Any

from xdefect.cli.common import MODEL_HELP, add_output, command, emit, fmt_ap, group

__all__ = ["cmd_ensemble", "cmd_list", "cmd_show", "register"]


def cmd_list(args: argparse.Namespace) -> int:
    from xdefect.models import registry_table

    table = registry_table()
    if args.json:
        print(json.dumps([{k: r[k] for k in ("name", "p", "d", "f", "params",
                                             "macs_per_patch", "stretch")} for r in table],
                         indent=2))
        return 0
    w = max(len(r["name"]) for r in table) + 2
    print(f"{'name':<{w}}{'p':<17}{'d':<24}{'f':<18}{'params':>11}{'MACs/patch':>13}  "
          "description")

    def fmt(v: list[int]) -> str:
        return "(" + ",".join(map(str, v)) + ")"

    for r in table:
        print(f"{r['name']:<{w}}{fmt(r['p']):<17}{fmt(r['d']):<24}{fmt(r['f']):<18}"
              f"{r['params']:>11,}{r['macs_per_patch']:>13,}  {r['description']}")
    print("params counted as Keras does (BatchNorm: 4 per channel); see docs/models.md")
    return 0


def _print_stage(st: dict[str, Any]) -> None:
    member = "" if st.get("member") is None else f" (member {st['member']})"
    print(f"  stage {st['stage']}{member}: {st.get('command') or '(command not recorded)'}")
    if st.get("kind") == "ensemble":
        chk = {True: "file on disk matches", False: "FILE ON DISK DIFFERS",
               None: "file not on disk"}
        for i, (m, ok) in enumerate(zip(st.get("members") or [],
                                        st.get("members_files_match") or [], strict=False)):
            print(f"    member {i}: {m.get('file')} sha256 {str(m.get('sha256'))[:16]}... "
                  f"({m.get('arch')}; {chk[ok]})")
    elif st.get("kind") == "segmenter":
        roots = "; ".join(f"{r}: {', '.join(ss)}"
                          for r, ss in (st.get("data_roots") or {}).items())
        files = f" + {st['data_files']} image files" if st.get("data_files") else ""
        print(f"    segmenter crops from {roots or '-'}{files}, image splits "
              f"{', '.join(st.get('data_image_splits') or ['?'])}, sources "
              f"{json.dumps(st.get('data_sources'))}")
        hard = st.get("hard_negatives")
        if hard:
            print(f"    hard negatives: {hard['rounds']} round(s), {hard['share']:g} of the "
                  f"other crops on them (regions of score > {hard['theta']:g}, at most "
                  f"{hard['per_image']} per image)")
    else:
        print(f"    data {st.get('data')} (manifest sha256 "
              f"{str(st.get('data_manifest_sha256'))[:16]}...), protocol "
              f"{st.get('data_protocol')}, mix {st.get('data_mix')}, image splits "
              f"{', '.join(st.get('data_image_splits') or ['?'])}, sources "
              f"{json.dumps(st.get('data_sources'))}")
    if st.get("data_command"):
        print(f"    dataset: {st['data_command']}")
    init = st.get("init")
    if isinstance(init, dict):
        chk = {True: "file on disk matches", False: "FILE ON DISK DIFFERS",
               None: "file not on disk"}[st["init_file_matches"]]
        print(f"    init {init.get('file')} sha256 {str(init.get('sha256'))[:16]}... "
              f"(card {str(init.get('card_sha256'))[:16]}...; {chk})")
    elif init:
        print(f"    init {init} (checksum not recorded)")


def cmd_show(args: argparse.Namespace) -> int:
    from xdefect.checkpoint import describe_model, resolve_model

    d = describe_model(resolve_model(args.model))
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    ok = {True: "matches the card", False: "DOES NOT MATCH the card", None: "not in the card"}
    when = (f"{d['steps']} steps" if d.get("steps") is not None else f"epoch {d['epoch']}")
    print(f"{d['file']}: {d['name'] or '(unnamed)'} ({d['arch']}, {when})")
    if d["description"]:
        print(f"  {d['description']}")
    print(f"  weights sha256 {d['weights_sha256'][:16]}... {ok[d['weights_match_card']]}")
    s = d["summary"]
    splits = ", ".join(s["image_splits"]) if s["image_splits"] else "unknown (incomplete lineage)"
    print(f"  trained on: image splits {splits}; series {', '.join(s['series']) or '-'}; "
          f"sources {', '.join(s['sources'])}; real defects "
          f"{'yes' if s['real_defects'] else 'no'}")
    for st in d["lineage"]:
        _print_stage(st)
    if d.get("hard_negatives"):
        print("  hard negatives: its own false alarms on the annotated training images, "
              + ", ".join(f"{r['false_alarms']} found at step {r['step']}"
                          for r in d["hard_negatives"]))
    if d["detection"]:
        print("  detection: " + ", ".join(f"{k} {v}" for k, v in d["detection"].items()))
    t = d["test_even"]
    if t:
        line = f"  test images: AP {fmt_ap(t['ap'])} over {t['gt_boxes']} boxes"
        if t.get("unseen"):
            line += (f"; unseen defects AP {fmt_ap(t['unseen']['ap'])} over "
                     f"{t['unseen']['gt_boxes']} boxes")
        print(line)
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from xdefect.checkpoint import ensemble_segmenters

    res = ensemble_segmenters(args.models, args.out)
    emit(args, res, lambda: print(
        f"{res['model']}: ensemble of {len(res['members'])} segmenters "
        f"({res['params']:,} parameters); detection settings of the first member: choose "
        f"its own with xdefect tune-segmenter --model {res['model']} --out RUN"))
    return 0


def register(sub: Any) -> None:
    msub = group(sub, "models", "the registry of patch CNN architectures")
    ml = command(msub, "list", cmd_list, "architectures with parameters and MACs per patch",
                 "Every registered architecture: xnet2 (Xnet-II), t3-0 ... t3-7 (the rows of "
                 "the paper's Table 3) and xnet (WACV 2017). params follow Keras' count "
                 "(BatchNorm: 4 per channel).")
    ml.add_argument("--json", action="store_true", help="print JSON")
    ms = command(msub, "show", cmd_show, "a model's card: lineage, checksums, figures",
                 "Print a model's identity and lineage: every training stage with its "
                 "captured command line, data manifest checksum, image splits, series and "
                 "sources, and init weights checksums; checks the weights (and any init file "
                 "still on disk) against the recorded checksums.")
    ms.add_argument("model", nargs="?", default=None, help=MODEL_HELP)
    ms.add_argument("--json", action="store_true", help="print JSON")
    me = command(msub, "ensemble", cmd_ensemble, "one model file running several segmenters",
                 "Combine two or more segmenter model files (or bundled names) into one "
                 "model that averages their defect probabilities (members trained with "
                 "other seeds or inputs err on different pixels). Nothing is trained; the "
                 "card records every member's lineage and checksums. Writes "
                 "OUT/model.safetensors + model.json with the first member's detection "
                 "settings: choose the ensemble's own with xdefect tune-segmenter.")
    me.add_argument("models", nargs="+", metavar="MODEL", help="segmenter files or bundled "
                    "names")
    me.add_argument("--out", required=True, help="folder for model.safetensors + model.json")
    add_output(me)
