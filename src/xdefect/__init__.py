"""xdefect: automated X-ray inspection of castings.

Three lines to inspect a radiograph::

    import xdefect
    det = xdefect.Detector.load()            # the bundled default; or a name or a path
    found = det.detect(image)                # list of Detection(box, score, area)
    report = xdefect.evaluate_folder(det, gdxray_root, split="even")

Stages (one module each, data flowing one way; ``docs/architecture.md``):
``gdxray``/``io`` (images, ground truth, casting mask) -> ``simulate`` (ellipsoidal
defects, Eq. 3) -> ``windows``/``patches``/``dataset`` (32x32 patch datasets) -> ``models``
/ ``train`` / ``gan`` (Xnet-II, the DCGAN) -> ``detect``/``detector`` (score map,
regions) -> ``evaluate``/``protocol`` (IoU matching, AP) -> ``report`` (pictures);
``augment`` transforms training windows; ``crops``/``segment``/``train_segment`` are the
segmenter's stages (crops with exact simulated masks, the per-pixel model and its score
map, training; its regions are ``detect``'s); ``pipelines`` joins the stages over files,
``adaptation`` fine-tunes a model on a new casting's unlabelled images, and ``cli`` is the
command line.

Box convention used everywhere in xdefect: ``(x1, y1, x2, y2)`` in pixels, 0-based,
half-open (``x2``/``y2`` exclusive); x is the column, y the row.

The names below are the public surface; they are imported on first use, so that
``import xdefect`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "Detector": "xdefect.detector",
    "Detection": "xdefect.detect",
    "DetectParams": "xdefect.detect",
    "ScoreMap": "xdefect.detect",
    "Evaluation": "xdefect.protocol",
    "evaluate_folder": "xdefect.protocol",
    "evaluate_detections": "xdefect.protocol",
    "evaluate_annotated": "xdefect.protocol",
    "simulate_defects": "xdefect.simulate",
    "SamplerConfig": "xdefect.simulate",
    "BuildArgs": "xdefect.patches",
    "build_dataset": "xdefect.pipelines",
    "detect_files": "xdefect.pipelines",
    "run_demo": "xdefect.pipelines",
    "open_dataset": "xdefect.dataset",
    "TrainConfig": "xdefect.train",
    "train": "xdefect.train",
    "InputError": "xdefect.errors",
    "DataWarning": "xdefect.errors",
    "AdaptConfig": "xdefect.adaptation",
    "adapt": "xdefect.adaptation",
    "AugmentParams": "xdefect.augment",
    "CropConfig": "xdefect.crops",
    "SegTrainConfig": "xdefect.train_segment",
    "train_segmenter": "xdefect.train_segment",
}

__all__ = ["AdaptConfig", "AugmentParams", "BuildArgs", "CropConfig", "DataWarning",
           "DetectParams", "Detection", "Detector", "Evaluation", "InputError",
           "SamplerConfig", "ScoreMap", "SegTrainConfig", "TrainConfig", "__version__", "adapt",
           "build_dataset", "detect_files", "evaluate_annotated", "evaluate_detections",
           "evaluate_folder",
           "open_dataset", "run_demo", "simulate_defects", "train", "train_segmenter"]

if TYPE_CHECKING:  # pragma: no cover
    from xdefect.adaptation import AdaptConfig, adapt
    from xdefect.augment import AugmentParams
    from xdefect.crops import CropConfig
    from xdefect.dataset import open_dataset
    from xdefect.detect import Detection, DetectParams, ScoreMap
    from xdefect.detector import Detector
    from xdefect.errors import DataWarning, InputError
    from xdefect.patches import BuildArgs
    from xdefect.pipelines import build_dataset, detect_files, run_demo
    from xdefect.protocol import (
        Evaluation,
        evaluate_annotated,
        evaluate_detections,
        evaluate_folder,
    )
    from xdefect.simulate import SamplerConfig, simulate_defects
    from xdefect.train import TrainConfig, train
    from xdefect.train_segment import SegTrainConfig, train_segmenter


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xdefect' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
