"""``xdefect export``: a model as ONNX graphs for ONNX Runtime."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xdefect.cli.common import MODEL_HELP, add_output, command, emit, int_in

__all__ = ["cmd_export", "register"]


def cmd_export(args: argparse.Namespace) -> int:
    from xdefect.pipelines import export_model

    r = export_model(args.model, args.out, args.stride)
    if r["graph"] == "segment":
        emit(args, r, lambda: print(
            f"{r['segment']}: segmenter, per-pixel defect probability, any image size "
            f"(sides padded to multiples of 8) ({r['bytes'][r['segment']]:,} bytes); model "
            "card embedded as metadata"))
        return 0
    if r["graph"] == "patch":
        emit(args, r, lambda: print(
            f"{r['patch']}: patch classifier, 32x32 windows each stretched to its own "
            f"contrast inside the graph (no dense graph for such a model) "
            f"({r['bytes'][r['patch']]:,} bytes); model card embedded as metadata"))
        return 0
    emit(args, r, lambda: print(
        f"{r['dense']}: dense score-map network, stride {r['stride']}, any image size "
        f"({r['bytes'][r['dense']]:,} bytes); {r['patch']}: patch classifier "
        f"({r['bytes'][r['patch']]:,} bytes); model card embedded as metadata"))
    return 0


def register(sub: Any) -> None:
    e = command(sub, "export", cmd_export, "export a model to ONNX",
                "Export a model for ONNX Runtime: for a patch classifier OUT (the dense "
                "score-map network at the card's stride, dynamic height and width) and OUT "
                "less .onnx plus .patch.onnx (the 32x32 patch classifier, dynamic batch); "
                "for a patch classifier that stretches each window to its own contrast "
                "(xnet2-stretch) OUT is the patch classifier alone (detect runs such a model "
                "from its .safetensors in patch mode); "
                "for a segmenter OUT (the per-pixel probability graph, dynamic height and "
                "width); each with the model card embedded as metadata (docs/detection.md, "
                "'ONNX').")
    e.add_argument("--model", default=None, help=MODEL_HELP)
    e.add_argument("--format", choices=("onnx",), default="onnx", help="the format")
    e.add_argument("--out", type=Path, required=True, metavar="FILE.onnx",
                   help="the dense graph's file (a stretched patch classifier: its patch "
                        "graph's)")
    add_output(e)
    e.add_argument("--stride", type=int_in(1, 64), default=None,
                   help="the dense graph's stride (default: the card's)")
