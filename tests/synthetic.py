"""A fast, drawn stand-in for the rendered connector, for tests that must not depend on Blender:
a dark housing with a 3 x 9 array of bright pins on a light table, with pose jitter."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("good", "pushed", "tilted", "missing")


def draw_part(rng: np.random.Generator, label: str = "good", cell: tuple[int, int] | None = None,
              size: int = 256, jitter: float = 1.0, pin_offset: int = 0) -> np.ndarray:
    """`pin_offset` moves the pins along the housing (px), as a tilted camera does to tall pins."""
    img = np.full((size, size, 3), 200 + rng.integers(-10, 10), np.uint8)
    w, h = 72, 216
    cx, cy = size / 2 + rng.uniform(-6, 6) * jitter, size / 2 + rng.uniform(-6, 6) * jitter
    angle = rng.uniform(-3, 3) * jitter
    margin = abs(pin_offset)
    part = np.full((h + 2 * margin, w, 3), 30, np.uint8)
    for row in range(9):
        for col in range(3):
            x, y = col * 24 + 12, row * 24 + 12 + margin + pin_offset
            r = 7
            if (col, row) == cell:
                if label == "missing":
                    continue
                if label == "pushed":
                    r = 5
                if label == "tilted":
                    x += 5
            colour = (230, 220, 180)
            if (col == 1 and row % 3 == 0) or (col != 1 and (row + 1) % 3 == 0):
                cv2.circle(part, (x, y), r, colour, -1)
            else:
                cv2.rectangle(part, (x - r, y - r), (x + r, y + r), colour, -1)
    housing = np.zeros(part.shape[:2], np.uint8)
    housing[margin:margin + h] = 255
    housing[np.any(part > 100, axis=2)] = 255  # pins that stand out over the housing's edge
    h = part.shape[0]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[:, 2] += (cx - w / 2, cy - h / 2)
    mask = cv2.warpAffine(housing, m, (size, size))
    warped = cv2.warpAffine(part, m, (size, size))
    img[mask > 127] = warped[mask > 127]
    noise = rng.normal(0, 2, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def draw_blocks(n: int, frame: tuple[int, int], block: tuple[int, int], at: tuple[int, int], table: int = 210,
                seed: int = 0) -> list[np.ndarray]:
    """`n` frames (h, w) of a dark flat block (h, w) on a light table, its corner near `at` (x, y) +-3 px:
    a part without features that repeat."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        img = np.full((*frame, 3), table, np.uint8)
        x, y = at[0] + int(rng.integers(-3, 3)), at[1] + int(rng.integers(-3, 3))
        img[y:y + block[0], x:x + block[1]] = 60
        images.append(img)
    return images


def write_dataset(root: Path, per_class: dict[str, int], seed: int = 0, manifest: bool = True,
                  pin_offset: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    items = []
    for label, n in per_class.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cell = None if label == "good" else (int(rng.integers(3)), int(rng.integers(9)))
            image = draw_part(rng, label, cell, pin_offset=pin_offset)
            name = f"{label}/{label}_{i:04d}.png"
            cv2.imwrite(str(root / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            items.append({"file": name, "class": label, "cell": list(cell) if cell else None})
    if manifest:
        (root / "manifest.json").write_text(json.dumps({"schema": 1, "images": items}))
    return root
