"""Draw the station's icon (a 3 x 9 pin array with a green check) as PNG and ICO, so the icon is remade, not
stored: `python installer/make_icon.py OUT_FOLDER`."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 256


def draw_icon(size: int = SIZE) -> Image.Image:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    s = size / 256
    draw.rounded_rectangle((16 * s, 16 * s, 240 * s, 240 * s), radius=36 * s, fill=(32, 34, 38, 255))
    draw.rounded_rectangle((44 * s, 30 * s, 150 * s, 226 * s), radius=10 * s, fill=(70, 74, 82, 255))
    for col in range(3):
        for row in range(9):
            x, y = (62 + col * 34) * s, (40 + row * 20.5) * s
            round_pin = (col == 1 and row % 3 == 0) or (col != 1 and (row + 1) % 3 == 0)
            box = (x - 6 * s, y - 6 * s, x + 6 * s, y + 6 * s)
            (draw.ellipse if round_pin else draw.rectangle)(box, fill=(214, 178, 92, 255))
    draw.line([(150 * s, 150 * s), (180 * s, 185 * s), (228 * s, 100 * s)], fill=(40, 200, 90, 255),
              width=int(22 * s), joint="curve")
    return image


def main(out: str) -> int:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    icon = draw_icon()
    icon.save(folder / "station.png")
    icon.save(folder / "station.ico", sizes=[(16, 16), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/icon"))
