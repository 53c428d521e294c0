"""Weights on disk: safetensors plus a JSON sidecar (an I/O helper).

A model file ``NAME.safetensors`` holds only tensors (never pickles); its sidecar
``NAME.json`` holds the model card: ``{"format": "xdefect-model/1", "arch": {...},
"normalisation": {...}, ...}`` (architecture, input normalisation, data manifest
checksum, epoch, metrics, seed, version...). :func:`load_model` refuses anything else with
an :class:`InputError` naming the file.
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
from xdefect.io import atomic_path
from xdefect.models import NORMALISATION, ArchConfig, PatchCNN

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
               ) -> tuple[PatchCNN, dict[str, Any]]:
    """Load an xdefect model (safetensors + sidecar), in eval mode, and its card."""
    card = read_card(path)
    tensors = load_tensors(path)
    try:
        arch = ArchConfig.from_dict(card["arch"])
        model = PatchCNN(arch)
        model.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0]
        raise InputError(f"{path}: weights do not match the card's architecture ({msg})") from None
    norm = card.get("normalisation", NORMALISATION)
    if norm != NORMALISATION:
        raise InputError(f"{sidecar(path)}: unsupported input normalisation {norm}")
    return model.to(device).eval(), card


def bundled_model() -> Path | None:
    """Path of the model installed with the package, if any."""
    p = Path(__file__).resolve().parent / "weights" / "xnet2-e100g000.safetensors"
    return p if p.is_file() else None
