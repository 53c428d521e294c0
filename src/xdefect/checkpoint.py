"""Weights on disk: safetensors plus a JSON sidecar (an I/O helper).

A model file ``NAME.safetensors`` holds only tensors (never pickles); its sidecar
``NAME.json`` holds the model card: ``{"format": "xdefect-model/1", "arch": {...},
"normalisation": {...}, ...}`` (architecture, input normalisation, data manifest
checksum, epoch, metrics, seed, version...). :func:`load_model` refuses anything else with
an :class:`InputError` naming the file.

Lineage: ``card["weights_sha256"]`` is the checksum of the tensors file beside it, and
``card["lineage"]`` lists every training stage that led to the weights, oldest first: the
exact command line (captured by the program), the data manifest's checksum, protocol,
series, image splits and sources, the dataset's own command line, and the init weights'
checksum with their card's checksum (whose own lineage is the earlier stages).
:func:`lineage_summary` condenses it (which image splits, series and sources any stage
trained on); ``xdefect models show`` prints it and checks the checksums.

Bundled models (:data:`BUNDLED`) are installed under ``xdefect/weights/`` and can be named
instead of a path (``--model xnet2-paper``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from xdefect.errors import InputError
from xdefect.io import atomic_path, command_line, sha256_file
from xdefect.models import NORMALISATION, ArchConfig, PatchCNN
from xdefect.segment import (
    SEGMENT_PARAMS,
    SegConfig,
    SegNet,
    create_segmenter,
    is_segmenter_arch,
)

__all__ = ["BUNDLED", "BUNDLED_ALIASES", "CHECKPOINT_FORMAT", "DEFAULT_CLASSIFIER",
           "DEFAULT_MODEL", "MODEL_FORMAT", "WEIGHTS_DIR", "bundled_model", "card_lineage",
           "derived_run", "describe_model", "ensemble_segmenters", "init_record",
           "lineage_summary",
           "load_model", "load_tensors",
           "model_state", "optimizer_tensors", "prefixed", "read_card", "rebuild_ensemble",
           "resolve_model",
           "restore_optimizer", "save_model", "save_tensors", "sidecar", "unprefixed"]

MODEL_FORMAT = "xdefect-model/1"


def sidecar(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a ``.safetensors`` file."""
    return Path(path).with_suffix(".json")


def save_tensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor],
                 card: dict[str, Any]) -> None:
    """Write tensors (safetensors) and card (JSON), each atomically."""
    p = Path(path)
    with atomic_path(p) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        digest = sha256_file(tmp)
    card = {**card, "weights_sha256": digest}
    with atomic_path(sidecar(p)) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict of a (possibly DDP-wrapped) model, without the DDP prefix."""
    m = model.module if hasattr(model, "module") else model
    return {k: v for k, v in m.state_dict().items()}


def save_model(path: str | os.PathLike[str], model: torch.nn.Module, card: dict[str, Any]) -> None:
    """Save a :class:`PatchCNN` with its card (``arch`` and ``normalisation`` filled in)."""
    m = model.module if hasattr(model, "module") else model
    full = {"format": MODEL_FORMAT, "arch": m.arch.to_dict(), "normalisation": NORMALISATION,
            **card}
    save_tensors(path, model_state(m), full)


CHECKPOINT_FORMAT = "xdefect-checkpoint/1"


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with keys ``PREFIX.key``: several state dicts in one safetensors file."""
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors whose keys start with ``PREFIX.``, without it (inverts :func:`prefixed`)."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimiser state as flat tensors (safetensors, keys ``optim.<param id>.<name>``)
    plus JSON-able scalars (param groups, scalar state); :func:`restore_optimizer`
    inverts it."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict = {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.ndim > 0:
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars["state"].setdefault(str(pid), {})[k] = float(v)
    return tensors, scalars


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], scalars: dict
                      ) -> None:
    """Load what :func:`optimizer_tensors` produced into ``opt``."""
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for pid, st in scalars["state"].items():
        for k, v in st.items():
            state.setdefault(int(pid), {})[k] = torch.tensor(v)
    opt.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})


def read_card(path: str | os.PathLike[str], formats: tuple[str, ...] = (MODEL_FORMAT,)
              ) -> dict[str, Any]:
    """Read and check the sidecar of a model file (or, with ``formats``, a checkpoint)."""
    p = Path(path)
    sc = sidecar(p)
    if not sc.is_file():
        raise InputError(f"{p}: not an xdefect model (no sidecar {sc.name} beside it)")
    try:
        card = json.loads(sc.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{sc}: malformed model card ({exc})") from None
    if not isinstance(card, dict) or card.get("format") not in formats or "arch" not in card:
        raise InputError(f"{sc}: not an xdefect model card (format {' or '.join(formats)} "
                         "expected)")
    return card


def load_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a safetensors file; :class:`InputError` if missing or not safetensors."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such model file")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise InputError(f"{p}: not a safetensors file ({msg})") from None


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu"
               ) -> tuple[PatchCNN | SegNet, dict[str, Any]]:
    """Load an xdefect model (safetensors + sidecar), in eval mode, and its card: a
    patch classifier (:class:`~xdefect.models.PatchCNN`) or, when the card's ``arch``
    says ``"family": "segmenter"``, a segmenter (:class:`~xdefect.segment.SegNet`)."""
    card = read_card(path)
    tensors = load_tensors(path)
    try:
        model: PatchCNN | SegNet
        if is_segmenter_arch(card["arch"]):
            model = create_segmenter(SegConfig.from_dict(card["arch"]))
        else:
            model = PatchCNN(ArchConfig.from_dict(card["arch"]))
        model.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0]
        raise InputError(f"{path}: weights do not match the card's architecture ({msg})") from None
    norm = card.get("normalisation", NORMALISATION)
    if norm != NORMALISATION:
        raise InputError(f"{sidecar(path)}: unsupported input normalisation {norm}")
    return model.to(device).eval(), card


#: bundled model names -> what each is (the files are ``weights/NAME.safetensors``)
BUNDLED = {
    "segnet-xdefect": "the default: a segmenter (per-pixel score map, boxes from region "
                      "extents) trained on crops of the train images with simulated voids "
                      "and the real defects' inscribed ellipses as exact masks",
    "xnet2-xdefect": "the best patch classifier by any means that keeps the tuning and test "
                     "images out of training (the default of commands that need a patch "
                     "classifier; the default model until segnet-xdefect)",
    "xnet2-paper": "the paper's protocol only: E100/G000 simulated defects from the train "
                   "images, no real defect windows",
}
#: the model used when none is named
DEFAULT_MODEL = "segnet-xdefect"
#: the model used when none is named by a command that needs a patch classifier
#: (``xdefect test``, benchmarks of the window modes)
DEFAULT_CLASSIFIER = "xnet2-xdefect"
#: old names that keep working
BUNDLED_ALIASES = {"xnet2-e100g000": DEFAULT_CLASSIFIER}
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def bundled_model(name: str = DEFAULT_MODEL) -> Path | None:
    """Path of a model installed with the package (default: the default model), if any."""
    name = BUNDLED_ALIASES.get(name, name)
    p = WEIGHTS_DIR / f"{name}.safetensors"
    return p if name in BUNDLED and p.is_file() else None


def resolve_model(value: str | os.PathLike[str] | None) -> Path:
    """A model path from ``--model``: ``None`` -> the default bundled model
    (:data:`DEFAULT_MODEL`), a bundled name (``segnet-xdefect``, ``xnet2-xdefect``,
    ``xnet2-paper``) -> its file, anything else -> a path.
    :class:`InputError` when nothing is found."""
    if value is None:
        p = bundled_model()
        if p is None:
            raise InputError("no --model given and no bundled model installed")
        return p
    text = str(value)
    if text in BUNDLED or text in BUNDLED_ALIASES:
        p = bundled_model(text)
        if p is None:
            raise InputError(f"--model {text}: the bundled model is not installed")
        return p
    p = Path(value)
    if not p.exists() and p.suffix == "" and not p.parent.parts:
        raise InputError(f"--model {text}: neither a file nor a bundled model "
                         f"({', '.join(BUNDLED)})")
    return p


def derived_run(model: str | os.PathLike[str] | None, out: str | os.PathLike[str], verb: str
                ) -> tuple[Path, Path]:
    """The weights file of ``model`` (:func:`resolve_model`) and the run folder ``out`` of
    a model made from it with the same weights and a new card (``tune-segmenter``,
    ``calibrate-boxes``): :class:`InputError` for an ONNX graph (``verb`` says what to do
    with its ``.safetensors`` model instead) and for an ``out`` holding a model already."""
    src = resolve_model(model)
    if src.suffix.lower() == ".onnx":
        raise InputError(f"{src}: an ONNX graph; {verb} the .safetensors model it was "
                         "exported from")
    run = Path(out)
    if (run / "model.safetensors").exists():
        raise InputError(f"{run}: holds a model already (use another --out)")
    return src, run


def init_record(path: str | os.PathLike[str], card: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """What a training stage records of its init weights: file, checksums of weights and
    card, and the init card's architecture name, epoch and data manifest checksum
    (``card``: the already-read card of ``path``, read here when not given)."""
    p = Path(path)
    card = read_card(p) if card is None else card
    return {"file": str(p), "sha256": sha256_file(p), "card_sha256": sha256_file(sidecar(p)),
            "arch": card["arch"].get("name"), "epoch": card.get("epoch"),
            "data_manifest_sha256": card.get("data_manifest_sha256")}


def ensemble_segmenters(models: list[str | os.PathLike[str]], out: str | os.PathLike[str],
                        name: str | None = None) -> dict[str, Any]:
    """Write one model file that runs several segmenter files as an ensemble
    (:class:`~xdefect.segment.SegEnsemble`: the mean of their probabilities) to
    ``out/model.safetensors`` + ``model.json``. Nothing is trained: the members' weights
    are stored under ``members.I.``. The card: the members' architectures, every member's
    lineage (each stage marked with its ``member`` index) followed by an ``ensemble`` stage
    recording each member's file and checksums and the command line, ``data_roots`` the
    union of the members' (so that ``xdefect tune-segmenter`` tunes on the series they
    trained on), and the first member's detection settings, recorded as such
    (``detection_from``): choose the ensemble's own with ``xdefect tune-segmenter``.
    ``models``: files or bundled names, at least two plain segmenters (no ONNX graph, no
    patch classifier, no ensemble). :class:`InputError` naming the file otherwise; ``out``
    must not hold a model already. Returns ``{"model", "members", "params"}``."""
    paths = [resolve_model(m) for m in models]
    if len(paths) < 2:
        raise InputError("an ensemble needs at least two segmenter models")
    run = Path(out)
    if (run / "model.safetensors").exists():
        raise InputError(f"{run}: holds a model already (use another --out)")
    nets, cards = [], []
    for p in paths:
        if p.suffix.lower() == ".onnx":
            raise InputError(f"{p}: an ONNX graph; ensemble the .safetensors models")
        net, card = load_model(p)
        if not isinstance(net, SegNet):
            raise InputError(f"{p}: a patch classifier; only segmenters can be ensembled")
        if net.arch.members:
            raise InputError(f"{p}: an ensemble already; name its members' files instead")
        nets.append(net)
        cards.append(card)
    cfg = SegConfig.ensemble([n.arch for n in nets])
    tensors = {f"members.{i}.{k}": v for i, n in enumerate(nets)
               for k, v in n.state_dict().items()}
    run.mkdir(parents=True, exist_ok=True)
    save_tensors(run / "model.safetensors", tensors,
                 _ensemble_card(cfg, paths, cards, name or run.name))
    return {"model": str(run / "model.safetensors"), "members": [str(p) for p in paths],
            "params": cfg.params()}


def rebuild_ensemble(card_path: str | os.PathLike[str]) -> Path:
    """Write the missing tensors file of an ensemble's card (``RUN/model.json``, also a
    re-tuned copy of one) from the member files its ``ensemble`` lineage stage records:
    an ensemble's weights are nothing but its members' (:func:`ensemble_segmenters`),
    so a card can travel without them. A member recorded at a path that is gone is
    looked for among the bundled models (:data:`BUNDLED`) by its checksum. Each member
    file must match the checksum the stage recorded, and the file written must match the
    card's ``weights_sha256``; otherwise :class:`InputError` naming the file, and nothing
    is written. Returns the weights' path (``RUN/model.safetensors``)."""
    weights = Path(card_path).with_suffix(".safetensors")
    card, where = read_card(weights), sidecar(weights)
    lineage = card_lineage(card)
    stages = [st for st in lineage if isinstance(st, dict) and st.get("kind") == "ensemble"]
    members = stages[-1].get("members") if stages else None
    if not (isinstance(card["arch"], dict) and card["arch"].get("members")
            and isinstance(members, list) and members
            and all(isinstance(m, dict) for m in members)):
        raise InputError(f"{where}: not an ensemble's card (no members recorded)")
    if weights.exists():
        raise InputError(f"{weights}: exists already (nothing to rebuild)")
    tensors: dict[str, torch.Tensor] = {}
    for i, m in enumerate(members):
        f = _member_file(Path(str(m.get("file"))), m.get("sha256"))
        if f is None:
            raise InputError(f"{where}: member {i} ({m.get('file')}) is missing")
        if sha256_file(f) != m.get("sha256"):
            raise InputError(f"{f}: not the weights {where} records as member {i} (sha256 "
                             "differs)")
        tensors.update(prefixed(f"members.{i}", load_tensors(f)))
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp))
        if sha256_file(tmp) != card.get("weights_sha256"):
            raise InputError(f"{weights}: the members' tensors do not give the weights its "
                             "card records (weights_sha256 differs)")
    return weights


def _member_file(path: Path, sha: object) -> Path | None:
    """``path`` where it exists, else the bundled model whose checksum is ``sha`` (an
    ensemble made in another checkout records the bundled file's path there)."""
    if path.is_file():
        return path
    found = (bundled_model(n) for n in BUNDLED)
    return next((b for b in found if b is not None and sha256_file(b) == sha), None)


def _ensemble_card(cfg: SegConfig, paths: list[Path], cards: list[dict[str, Any]], name: str
                   ) -> dict[str, Any]:
    """The card of :func:`ensemble_segmenters`' model."""
    roots: dict[str, list[str]] = {}
    for c in cards:
        for r, ss in ((c.get("lineage") or [{}])[-1].get("data_roots") or {}).items():
            roots[r] = sorted(set(roots.get(r, [])) | set(ss))
    lineage = [{**st, "member": i} for i, c in enumerate(cards) for st in card_lineage(c)]
    lineage.append({"complete": True, "kind": "ensemble", "command": command_line(),
                    "members": [init_record(p, c) for p, c in zip(paths, cards, strict=True)],
                    "data_roots": roots, "data_series": sorted({s for ss in roots.values()
                                                                for s in ss}),
                    "data_image_splits": [], "data_sources": {}, "init": None})
    return {"format": MODEL_FORMAT, "arch": cfg.to_dict(), "normalisation": NORMALISATION,
            "name": name,
            "description": "ensemble (mean probability) of " + ", ".join(map(str, paths)),
            "detection": cards[0].get("detection") or SEGMENT_PARAMS.to_dict(),
            "detection_from": f"member 0 ({paths[0]}); choose the ensemble's own with "
                              "xdefect tune-segmenter",
            "training": {"steps": sum(int((c.get("training") or {}).get("steps") or 0)
                                      for c in cards), "members": len(cards)},
            # what adaptation and fine-tuning simulate: the first member's crops
            "train_config": {k: v for k, v in (cards[0].get("train_config") or {}).items()
                             if k == "crops"},
            "train_config_from": "member 0",
            "lineage": lineage}


def card_lineage(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The training stages of a card, oldest first. A card written before lineage was
    recorded yields one stage marked ``"complete": False`` with what the card has."""
    lin = card.get("lineage")
    if isinstance(lin, list):
        return lin
    return [{"complete": False, "data": card.get("data"),
             "data_manifest_sha256": card.get("data_manifest_sha256"),
             "data_protocol": card.get("data_protocol"), "data_mix": card.get("data_mix"),
             "data_sources": (card.get("data_counts") or {}).get("source"),
             "data_image_splits": None, "command": None,
             "init": (card.get("train_config") or {}).get("init")}]


def lineage_summary(card: dict[str, Any]) -> dict[str, Any]:
    """What any training stage of a card saw: the union of image splits, series and
    patch sources, whether real defect windows (``real`` or ``gan`` sources: both learnt
    from real defects) reached training, and whether the lineage is complete."""
    splits: set[str] = set()
    series: set[str] = set()
    sources: set[str] = set()
    complete = True
    for st in card_lineage(card):
        if st.get("complete") is False or st.get("data_image_splits") is None:
            complete = False
        splits.update(st.get("data_image_splits") or [])
        series.update(st.get("data_series") or [])
        sources.update((st.get("data_sources") or {}).keys())
        splits.update(st.get("gan_image_splits") or [])
    return {"image_splits": sorted(splits) if complete else None,
            "series": sorted(series), "sources": sorted(sources),
            "real_defects": bool(sources & {"real", "gan"}), "complete": complete,
            "stages": len(card_lineage(card))}


def _file_matches(record: Any) -> bool | None:
    """Whether the file an init or member record names still has its recorded checksum
    (None: no record or the file is not on disk)."""
    if isinstance(record, dict) and record.get("file") and Path(record["file"]).is_file():
        return sha256_file(record["file"]) == record.get("sha256")
    return None


def describe_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything ``xdefect models show`` prints: the card's identity, the weights
    checksum checked against the file, the lineage stages (init checksums checked where
    the init file is still on disk), the lineage summary, the last training's
    hard-negative rounds (a segmenter's, if any), detection parameters and the test
    figures. Never unpickles anything: it reads JSON and hashes bytes."""
    p = Path(path)
    card = read_card(p)
    if not p.is_file():
        raise InputError(f"{p}: no such model file")
    digest = sha256_file(p)
    stages = []
    for i, st in enumerate(card_lineage(card), start=1):
        stages.append({"stage": i, **st, "init_file_matches": _file_matches(st.get("init"))})
        if st.get("kind") == "ensemble":
            stages[-1]["members_files_match"] = [_file_matches(m)
                                                 for m in st.get("members") or []]
    return {"file": str(p), "name": card.get("name"), "description": card.get("description"),
            "arch": card["arch"].get("name"), "epoch": card.get("epoch"),
            "steps": (card.get("training") or {}).get("steps")
            if is_segmenter_arch(card["arch"]) else None,
            "hard_negatives": (card.get("training") or {}).get("hard_negatives"),
            "weights_sha256": digest,
            "weights_match_card": (card.get("weights_sha256") == digest
                                   if card.get("weights_sha256") else None),
            "summary": lineage_summary(card), "lineage": stages,
            "detection": card.get("detection"), "test_even": card.get("test_even"),
            "reproduce": card.get("reproduce")}
