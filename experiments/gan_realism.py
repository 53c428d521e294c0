"""How distinguishable are simulated defect patches from real ones?

Method (a classifier two-sample test): real defect patches are the windows of the
odd-numbered images holding at least a third of a real box (as the GAN's training data);
the images are split in two halves, one for training and one for testing, so that no
defect appears on both sides. For each simulator (GAN samples, ellipsoidal patches from a
dataset folder) a small patch CNN (``t3-1``) is trained for a few epochs to tell real
(label 0) from simulated (label 1) on balanced training sets, and its accuracy is measured
on balanced held-out sets. 0.5 means indistinguishable, 1.0 trivially separable. Prints one
JSON document.

    .venv/bin/python experiments/gan_realism.py --gan GANDIR --data data/e100g000 \\
        [--n 4000] [--epochs 4] [--out runs/realism.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xdefect import gdxray
from xdefect.dataset import open_dataset
from xdefect.gan import load_generator, sample
from xdefect.io import to_uint
from xdefect.models import create_model, normalise
from xdefect.windows import PATCH, real_positions


def real_patches_by_half(root: Path, step: int = 2) -> tuple[np.ndarray, np.ndarray]:
    halves: list[list[np.ndarray]] = [[], []]
    for smp in gdxray.iter_samples(root, split="odd"):
        if not len(smp.boxes):
            continue
        side = (smp.record.number // 2) % 2  # alternate odd images between the halves
        img8 = to_uint(smp.image, 8)
        for r, c, _ in real_positions(smp.boxes, smp.image.shape):
            if r % step == 0 and c % step == 0:
                halves[side].append(img8[r:r + PATCH, c:c + PATCH])
    return np.stack(halves[0]), np.stack(halves[1])


def two_sample_accuracy(real_tr, fake_tr, real_te, fake_te, epochs: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = create_model("t3-1")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = np.concatenate([real_tr, fake_tr])
    y = np.concatenate([np.zeros(len(real_tr)), np.ones(len(fake_tr))]).astype(np.int64)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(x))
        for s in range(0, len(order), 128):
            b = order[s:s + 128]
            opt.zero_grad()
            F.cross_entropy(model(normalise(x[b])), torch.from_numpy(y[b])).backward()
            opt.step()
    model.eval()
    xt = np.concatenate([real_te, fake_te])
    yt = np.concatenate([np.zeros(len(real_te)), np.ones(len(fake_te))])
    with torch.no_grad():
        pred = np.concatenate([model(normalise(xt[s:s + 1024])).argmax(1).numpy()
                               for s in range(0, len(xt), 1024)])
    return float((pred == yt).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gan", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="a wholeimage dataset folder")
    ap.add_argument("--gdxray", type=Path, default=gdxray.default_root())
    ap.add_argument("--n", type=int, default=4000, help="patches per class for training")
    ap.add_argument("--n-test", type=int, default=1000, help="patches per class for testing")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    r_tr, r_te = real_patches_by_half(a.gdxray)
    r_tr = r_tr[rng.choice(len(r_tr), min(a.n, len(r_tr)), replace=False)]
    r_te = r_te[rng.choice(len(r_te), min(a.n_test, len(r_te)), replace=False)]
    G, card = load_generator(a.gan)
    g = sample(G, len(r_tr) + len(r_te), rng)
    ds = open_dataset(a.data)
    ell_idx = np.flatnonzero(ds.source == "ellipsoid")
    e = np.asarray(ds.patches[np.sort(rng.choice(ell_idx, len(r_tr) + len(r_te),
                                                 replace=False))])
    e = e[rng.permutation(len(e))]
    doc = {
        "method": "held-out accuracy of a t3-1 CNN trained to tell real defect patches "
                  "(odd images, split by image) from simulated ones; 0.5 = indistinguishable",
        "real_train": int(len(r_tr)), "real_test": int(len(r_te)), "epochs": a.epochs,
        "gan": str(a.gan), "gan_iterations": card.get("iteration"),
        "accuracy_gan_vs_real": two_sample_accuracy(r_tr, g[:len(r_tr)], r_te, g[len(r_tr):],
                                                    a.epochs, a.seed),
        "accuracy_ellipsoid_vs_real": two_sample_accuracy(r_tr, e[:len(r_tr)], r_te,
                                                          e[len(r_tr):], a.epochs, a.seed),
    }
    text = json.dumps(doc, indent=2)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
