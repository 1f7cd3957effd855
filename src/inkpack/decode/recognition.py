"""The result of recognizing one input (:class:`Recognition`), shared by every recognizer:
images and ink (:mod:`inkpack.infer`), the command line and the server.
Import it from :mod:`inkpack.api` (re-exported there)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Recognition:
    """One result. ``positions[i]`` is ``(start, end)``: image pixels ``[x0, x1)``, or for ink
    lines the ink x-range of the character's points; ``candidates`` are ``(text, probability)``
    alternatives, best first (the top classes of a character model). ``warnings``: reasons to
    doubt that an image input was one text line (a page, a rotated line, a blank image; see
    :func:`inkpack.data.images.line_image_warnings`), in ``to_dict`` only when there are some."""

    text: str
    confidences: list[float] = field(default_factory=list)
    positions: list[tuple[float, float]] = field(default_factory=list)
    candidates: list[tuple[str, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["positions"] = [list(p) for p in self.positions]
        d["candidates"] = [{"text": t, "probability": p} for t, p in self.candidates]
        if not self.warnings:
            del d["warnings"]
        return d
