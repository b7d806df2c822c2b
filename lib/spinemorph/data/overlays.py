"""What a radiograph carries besides the patient: collimator shutters, lead markers, burned-in text, grid lines.

Each function works in place on a float image scaled to [0, 1] (bone bright) and returns a JSON-ready record of
what it drew. Shutters and markers keep clear of the labelled bodies, so the labels stay true; text is an
overlay on top of the anatomy and may cover anything. Boxes are (row0, col0, row1, col1), ends excluded.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from spinemorph.levels import label_box

__all__ = ["collimate", "lead_marker", "burn_text", "grid_lines", "draw_text"]

_WORDS = ("LAT", "L-SPINE", "T-SPINE", "LSPINE LAT", "STANDING", "ERECT", "SUPINE", "PORTABLE", "FLEX", "EXT",
          "LT", "RT", "CR", "DX", "WT BEARING", "AP/LAT", "SCOUT", "CROSS TABLE", "POST OP", "DECUB")
_MARKERS = ("L", "R", "LT", "RT")


def collimate(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> list[dict]:
    """Close up to four straight, slightly rotated shutters with soft edges; outside is bright or dark.

    A shutter stops short of the labelled bodies, so no labelled pixel is covered.
    """
    h, w = x.shape
    box = label_box(labels) or (h // 2, w // 2, h // 2, w // 2)
    value = float(rng.uniform(0.85, 1.0) if rng.random() < 0.6 else rng.uniform(0.0, 0.12))
    room = {"top": box[0], "left": box[1], "bottom": h - box[2], "right": w - box[3]}
    out = []
    for side in ("top", "bottom", "left", "right"):
        along = w if side in ("top", "bottom") else h
        depth_share, angle, soft, closed = rng.uniform(0.02, 0.15), rng.uniform(-3.0, 3.0), rng.uniform(0.5, 4.0), \
            rng.random() < 0.6
        slope = np.tan(np.deg2rad(angle))
        depth = depth_share * (h if side in ("top", "bottom") else w)
        reach = depth + abs(slope) * along / 2 + 3 * soft  # deepest the shutter's edge zone gets
        if not closed or reach > room[side] - 2:
            continue
        strip = int(np.ceil(reach))
        across = np.arange(strip, dtype=np.float32)[:, None]  # distance in from this side's edge
        edge = depth + slope * (np.arange(along, dtype=np.float32)[None, :] - along / 2)
        alpha = 1.0 / (1.0 + np.exp((across - edge) / soft))
        region = {"top": np.s_[:strip, :], "bottom": np.s_[h - strip:, :], "left": np.s_[:, :strip],
                  "right": np.s_[:, w - strip:]}[side]
        if side in ("bottom", "right"):
            alpha = alpha[::-1]
        if side in ("left", "right"):
            alpha = alpha.T
        x[region] += (value - x[region]) * alpha
        out.append({"side": side, "depth_px": round(float(depth), 2), "angle_deg": round(float(angle), 3),
                    "soft_px": round(float(soft), 3), "value": round(value, 4)})
    return out


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _glyphs(text: str, size: int) -> np.ndarray:
    """Return ``text`` rendered with PIL's default font, about ``size`` px tall, as coverage in [0, 1]."""
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (max(right - left, 1), max(bottom - top, 1)), 0)
    ImageDraw.Draw(canvas).text((-left, -top), text, fill=255, font=font)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def draw_text(x: np.ndarray, text: str, origin: tuple[int, int], size: int, value: float, alpha: float = 1.0,
              frame: int = 0) -> tuple[int, int, int, int] | None:
    """Draw ``text`` with its top-left at ``origin``, optionally inside a frame; return its box, clipped to the image.

    Only pixels inside the returned box change. Returns None (and draws nothing) if the box misses the image.
    """
    cover = _glyphs(text, size)
    if frame:
        pad = frame * 2
        cover = np.pad(cover, pad)
        cover[:frame], cover[-frame:], cover[:, :frame], cover[:, -frame:] = 1.0, 1.0, 1.0, 1.0
    r0, c0 = origin
    r1, c1 = r0 + cover.shape[0], c0 + cover.shape[1]
    cr0, cc0, cr1, cc1 = max(r0, 0), max(c0, 0), min(r1, x.shape[0]), min(c1, x.shape[1])
    if cr0 >= cr1 or cc0 >= cc1:
        return None
    part = cover[cr0 - r0: cr1 - r0, cc0 - c0: cc1 - c0] * np.float32(alpha)
    x[cr0:cr1, cc0:cc1] += (np.float32(value) - x[cr0:cr1, cc0:cc1]) * part
    return cr0, cc0, cr1, cc1


def lead_marker(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, tries: int = 8) -> dict | None:
    """Place a lead side marker ("L", "R"...), bright as lead is, where it covers no labelled body."""
    h, w = x.shape
    text, size = str(rng.choice(_MARKERS)), int(max(10, rng.uniform(0.03, 0.08) * h))
    frame = int(rng.integers(0, 3)) * max(1, size // 12)
    value = float(rng.uniform(0.85, 1.0))
    height, width = _glyphs(text, size).shape
    height, width = height + 4 * frame, width + 4 * frame
    if height >= h or width >= w:
        return None
    for _ in range(tries):
        r, c = int(rng.integers(0, h - height)), int(rng.integers(0, w - width))
        if not labels[r:r + height, c:c + width].any():
            box = draw_text(x, text, (r, c), size, value, 1.0, frame)
            return {"text": text, "box": list(box), "size_px": size, "value": round(value, 4)}
    return None


def burn_text(x: np.ndarray, rng: np.random.Generator, max_items: int = 4) -> list[dict]:
    """Burn one to ``max_items`` annotations (words, dates, numbers) into the image at random places and sizes."""
    h, w = x.shape
    out = []
    for _ in range(int(rng.integers(1, max_items + 1))):
        text = _annotation(rng)
        size = int(max(8, rng.uniform(0.012, 0.05) * h))
        value = float(rng.uniform(0.9, 1.0) if rng.random() < 0.7 else rng.uniform(0.0, 0.1))
        alpha = float(rng.uniform(0.6, 1.0))
        origin = int(rng.integers(-size // 2, h - size // 2)), int(rng.integers(-size, max(w - size * 2, 1)))
        box = draw_text(x, text, origin, size, value, alpha)
        if box is not None:
            out.append({"text": text, "box": list(box), "size_px": size, "value": round(value, 4)})
    return out


def _annotation(rng: np.random.Generator) -> str:
    """Return a random piece of burned-in text: a word, a date, a time, exposure values or an identifier."""
    kind = int(rng.integers(0, 6))
    if kind == 0:
        return str(rng.choice(_WORDS))
    if kind == 1:
        return f"{rng.integers(1995, 2027)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
    if kind == 2:
        return f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}"
    if kind == 3:
        return f"{rng.integers(60, 125)} kVp {rng.integers(2, 200)} mAs"
    if kind == 4:
        return f"ID {rng.integers(10**5, 10**8)}"
    return f"{rng.choice(_WORDS)} {rng.integers(1, 99)}"


def grid_lines(x: np.ndarray, rng: np.random.Generator, contrast: tuple[float, float]) -> dict:
    """Add the faint periodic lines of an anti-scatter grid, horizontal or vertical, often aliased (moiré)."""
    vertical = bool(rng.random() < 0.5)
    freq, phase = float(rng.uniform(0.15, 0.49)), float(rng.uniform(0.0, 2 * np.pi))
    amp = float(rng.uniform(*contrast)) * (1.0 if rng.random() < 0.5 else -1.0)
    sharp = int(rng.integers(1, 5))  # higher: thinner lines
    n = x.shape[1] if vertical else x.shape[0]
    profile = np.float32(amp) * ((0.5 + 0.5 * np.cos(2 * np.pi * freq * np.arange(n) + phase)) ** sharp
                                 ).astype(np.float32)
    x += profile[None, :] if vertical else profile[:, None]
    return {"direction": "vertical" if vertical else "horizontal", "cycles_per_px": round(freq, 4),
            "amplitude": round(amp, 5)}
