"""Contact sheet for `vidqa inspect --save`: sampled frames in time order, scores, kept tokens.

Each thumbnail shows the frame with the token grid laid over it: kept tokens at full brightness, dropped
ones dimmed, so where the budget went is visible at a glance. Under it: time, kept k/M and a bar of the
method's headline score relative to the video (VidCom²: uniqueness; a method without scores: the share
kept). The top-scoring frames get a coloured border. Pillow only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidqa.ui import top_frames

if TYPE_CHECKING:
    from vidqa.engine import InspectReport

THUMB_WIDTH = 224
COLUMNS = 6
CAPTION = 40
MARGIN = 8
TITLE = 34
HIGHLIGHT = (236, 72, 153)
BAR = (56, 189, 248)
DIM = 0.28  # brightness kept by dropped tokens


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _overlay(frame: np.ndarray, kept: list[int], grid: tuple[int, int], size: tuple[int, int]) -> Image.Image:
    """The frame resized to `size` with dropped token cells dimmed. frame: (H, W, 3) uint8."""
    rows, cols = grid
    mask = np.zeros(rows * cols, dtype=np.float32)
    mask[kept] = 1.0
    cell = Image.fromarray(((DIM + (1 - DIM) * mask.reshape(rows, cols)) * 255).astype(np.uint8), "L")
    shade = np.asarray(cell.resize(size, Image.NEAREST), dtype=np.float32)[..., None] / 255.0
    image = np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR), dtype=np.float32)
    return Image.fromarray((image * shade).clip(0, 255).astype(np.uint8))


def render_sheet(report: InspectReport) -> Image.Image:
    """The whole sheet as an RGB image."""
    frames = report.frames  # (T, H, W, 3)
    grid = report.grid
    count = len(report.budgets)
    height = max(1, round(THUMB_WIDTH * frames.shape[1] / frames.shape[2]))
    columns = min(COLUMNS, count)
    rows = -(-count // columns)
    cell_w, cell_h = THUMB_WIDTH + MARGIN, height + CAPTION + MARGIN
    sheet = Image.new("RGB", (MARGIN + columns * cell_w, TITLE + MARGIN + rows * cell_h), (17, 24, 39))
    draw = ImageDraw.Draw(sheet)
    small, title = _font(13), _font(16)
    share = 100 * report.kept / max(1, report.total)
    draw.text(
        (MARGIN, 8),
        f"{Path(report.video).name} · {report.model} · {report.compression.label} · "
        f"{report.kept}/{report.total} tokens ({share:.0f} %)",
        fill=(229, 231, 235),
        font=title,
    )
    _, scores = report.headline
    low, high = min(scores), max(scores)
    span = (high - low) or 1.0
    top = set(top_frames(scores))
    for i in range(count):
        x = MARGIN + (i % columns) * cell_w
        y = TITLE + MARGIN + (i // columns) * cell_h
        sheet.paste(_overlay(frames[i], report.kept_indices[i], grid, (THUMB_WIDTH, height)), (x, y))
        if i in top:
            draw.rectangle([x - 3, y - 3, x + THUMB_WIDTH + 2, y + height + 2], outline=HIGHLIGHT, width=3)
        caption = f"#{i}  {report.frame_times[i]:.2f}s  k {report.budgets[i]}/{report.tokens_per_frame}"
        draw.text((x, y + height + 4), caption, fill=(229, 231, 235), font=small)
        bar = 2 + round((scores[i] - low) / span * (THUMB_WIDTH - 2))
        colour = HIGHLIGHT if i in top else BAR
        draw.rectangle([x, y + height + 24, x + THUMB_WIDTH, y + height + 32], fill=(55, 65, 81))
        draw.rectangle([x, y + height + 24, x + bar, y + height + 32], fill=colour)
    return sheet


def save_sheet(report: InspectReport, path: str | Path) -> Path:
    path = Path(path)
    render_sheet(report).save(path, format="PNG")
    return path
