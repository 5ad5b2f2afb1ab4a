"""A trial kept for the record (docs/photographs.md): a small U-Net trained from scratch to segment synthetic
defects pasted on good images (the DRAEM/CutPaste idea without pretrained weights), scored by image AUROC per
defect kind on an MVTec-layout set made by scripts/real_sets.py. Not an engine: it did not beat RT per patch.

    python scripts/texture_segmenter_trial.py ~/.cache/station/real-sets/magnetic-tile/dev --side 128 --steps 1500
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from station.core.evaluate import auroc


def load(root: Path, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def read(f: Path) -> np.ndarray:
        return cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (side, side), interpolation=cv2.INTER_AREA)
    train = np.stack([read(f) for f in sorted((root / "train" / "good").iterdir())])
    test, kinds = [], []
    for folder in sorted((root / "test").iterdir()):
        for f in sorted(folder.iterdir()):
            test.append(read(f))
            kinds.append(folder.name)
    return train, np.stack(test), np.array(kinds)


def blob_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(2, 6))
    m = cv2.resize(rng.random((n, n)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return (m > np.quantile(m, rng.uniform(0.85, 0.99))).astype(np.float32)


def defect(im: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A copy of a good grey image with one synthetic defect, and its mask."""
    h, w = im.shape
    side = min(h, w)
    out, mask = im.astype(np.float32), np.zeros((h, w), np.float32)
    kind = rng.integers(4)
    if kind == 0:  # spots
        for _ in range(int(rng.integers(1, 4))):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (max(1, int(side * rng.uniform(0.01, 0.06))), max(1, int(side * rng.uniform(0.01, 0.06))))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    elif kind == 1:  # a scratch
        pts = np.cumsum(rng.normal(0, side * 0.08, (int(rng.integers(2, 6)), 2)), axis=0) + [rng.uniform(0, w),
                                                                                              rng.uniform(0, h)]
        cv2.polylines(mask, [pts.astype(np.int32)], False, 1.0, int(rng.integers(1, max(2, side // 60))))
    elif kind == 2:
        mask = blob_mask(h, w, rng)
    else:  # a rectangle
        pw, ph = max(2, int(w * rng.uniform(0.05, 0.3))), max(2, int(h * rng.uniform(0.05, 0.3)))
        dx, dy = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
        mask[dy:dy + ph, dx:dx + pw] = 1
    soft = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.5, 1.5))
    mode = rng.integers(3)
    if mode == 0:
        fill = out + rng.choice([-1, 1]) * rng.uniform(20, 80)
    elif mode == 1:
        fill = np.roll(donor.astype(np.float32), tuple(rng.integers(0, side, 2)), (0, 1))
    else:
        fill = np.full_like(out, rng.uniform(0, 255))
    a = rng.uniform(0.4, 1.0)
    return (out * (1 - a * soft) + fill * a * soft).clip(0, 255), (soft * a > 0.2).astype(np.float32)


class Segmenter(nn.Module):
    def __init__(self, c: int = 16) -> None:
        super().__init__()

        def block(i: int, o: int, d: int = 1) -> nn.Module:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=d, dilation=d), nn.BatchNorm2d(o), nn.ReLU(inplace=True))
        self.e1 = nn.Sequential(block(1, c), block(c, c))
        self.e2 = nn.Sequential(nn.MaxPool2d(2), block(c, 2 * c), block(2 * c, 2 * c))
        self.e3 = nn.Sequential(nn.MaxPool2d(2), block(2 * c, 2 * c), block(2 * c, 2 * c, 2), block(2 * c, 2 * c, 4))
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.d2, self.d1, self.out = block(4 * c, 2 * c), block(3 * c, c), nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.e1(x)
        b = self.e2(a)
        b2 = self.d2(torch.cat([self.up(self.e3(b)), b], 1))
        return self.out(self.d1(torch.cat([self.up(b2), a], 1)))[:, 0]


def standardise(ims: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(ims, np.float32))[:, None]
    return (x - x.mean((2, 3), keepdim=True)) / (x.std((2, 3), keepdim=True) + 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", type=Path)
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    train, test, kinds = load(args.set, args.side)
    net = Segmenter()
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=args.steps)
    start = time.monotonic()
    for step in range(args.steps):
        ims, masks = [], []
        for j, i in enumerate(rng.integers(0, len(train), 16)):
            im = train[i][:, ::-1] if rng.random() < 0.5 else train[i]
            im = im[::-1] if rng.random() < 0.5 else im
            if j % 4 == 0:  # a quarter stay good
                ims.append(im.astype(np.float32))
                masks.append(np.zeros(im.shape, np.float32))
            else:
                a, m = defect(im, train[rng.integers(len(train))], rng)
                ims.append(a)
                masks.append(m)
        logit, target = net(standardise(ims)), torch.from_numpy(np.stack(masks))
        bce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
        p = torch.sigmoid(logit)
        loss = ((1 - torch.where(target > 0.5, p, 1 - p)) ** 2 * bce).mean() * 10  # focal
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0:
            print(f"step {step} loss {loss.item():.4f} {time.monotonic() - start:.0f} s", flush=True)
    net.eval()
    with torch.no_grad():
        maps = torch.cat([torch.sigmoid(net(standardise(test[i:i + 32]))) for i in range(0, len(test), 32)])
    score = maps.flatten(1).max(1).values.numpy()
    good = kinds == "good"
    per_kind = {k: round(auroc(score[good], score[kinds == k]), 3) for k in map(str, sorted(set(kinds) - {"good"}))}
    print(f"image AUROC {auroc(score[good], score[~good]):.3f} per kind {per_kind}; "
          f"training {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
