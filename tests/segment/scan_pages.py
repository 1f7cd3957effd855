"""Synthetic page scans for the page commands: dark text lines on light paper, with the
baseline height of each line known from the font (its ascent below the line's top)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

TEXTS = ["Dear Sir I have the honour", "to send you the plants from", "the garden at Kew this week"]


def draw_page(path: Path, texts=TEXTS, size=(900, 600), top: int = 80, step: int = 120) -> list[float]:
    """Write the page to ``path``; the y of each line's baseline, top to bottom."""
    font = ImageFont.load_default(size=28)
    img = Image.new("L", size, 225)
    d = ImageDraw.Draw(img)
    for i, t in enumerate(texts):
        d.text((60, top + i * step), t, fill=25, font=font)
    img.save(path)
    return [top + i * step + font.getmetrics()[0] for i in range(len(texts))]
