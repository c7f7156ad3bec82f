"""Draws the installed app's icons into static/site/icons/: the favicon's blue diamond on a
white tile, as an SVG and as the PNGs that browsers and home screens ask for.

The files are committed; run this again only to change the mark:
``.venv/bin/python scripts/make_app_icons.py``.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ICONS = Path(__file__).resolve().parent.parent / "static" / "site" / "icons"
ACCENT = "#2f6fed"  # --accent in static/css/app.css, the favicon's colour
TILE = "#ffffff"
SUPERSAMPLE = 4  # drawn larger, then scaled down: smooth edges


def tile(size: int, *, corner: float, diamond: float) -> Image.Image:
    """A square tile of ``size`` px; ``corner`` and ``diamond`` (half its diagonal) are
    fractions of the size."""
    big = size * SUPERSAMPLE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, big - 1, big - 1), radius=round(corner * big), fill=TILE)
    middle, reach = big / 2, diamond * big
    draw.polygon(
        [
            (middle, middle - reach),
            (middle + reach, middle),
            (middle, middle + reach),
            (middle - reach, middle),
        ],
        fill=ACCENT,
    )
    return image.resize((size, size), Image.Resampling.LANCZOS)


def svg(*, corner: float, diamond: float) -> str:
    size = 512
    middle, reach = size // 2, round(diamond * size)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}">'
        f'<rect width="{size}" height="{size}" rx="{round(corner * size)}" fill="{TILE}"/>'
        f'<path fill="{ACCENT}" d="M{middle} {middle - reach}'
        f'l{reach} {reach}-{reach} {reach}-{reach}-{reach}z"/>'
        "</svg>\n"
    )


def main() -> None:
    ICONS.mkdir(parents=True, exist_ok=True)
    rounded = {"corner": 0.22, "diamond": 0.34}
    # Maskable and Apple icons are cut to shape by the system: a full-bleed tile, the mark
    # inside the safe zone (the middle circle of 80%).
    full_bleed = {"corner": 0.0, "diamond": 0.28}
    (ICONS / "icon.svg").write_text(svg(**rounded))
    for size in (192, 512):
        tile(size, **rounded).save(ICONS / f"icon-{size}.png", optimize=True)
    tile(512, **full_bleed).save(ICONS / "icon-maskable-512.png", optimize=True)
    tile(180, **full_bleed).convert("RGB").save(ICONS / "apple-touch-icon.png", optimize=True)


if __name__ == "__main__":
    main()
