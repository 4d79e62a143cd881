"""A synthetic thermal + RGB street scene, rendered by the package itself.

The demo, the node demo bag and the tests need IR/VIS pairs without downloading anything.
The scene has what makes fusion worth doing: people and a car that are warm in IR but hard to
see in the dim, noisy RGB frame, textured buildings and road markings that only RGB shows, and
slow motion so consecutive frames differ.
"""

from __future__ import annotations

import cv2
import numpy as np


def _background(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Static scene: VIS (float RGB in [0, 1], before lighting) and IR (float in [0, 1])."""
    vis = np.zeros((height, width, 3), np.float32)
    ir = np.zeros((height, width), np.float32)
    horizon = height * 2 // 5
    sky = np.linspace(0.55, 0.35, horizon, dtype=np.float32)[:, None]
    vis[:horizon] = sky[..., None] * np.array([0.6, 0.7, 1.0], np.float32)
    ir[:horizon] = 0.08
    # Buildings with windows: strong texture in RGB, faint in IR.
    x = 0
    while x < width:
        bw = int(rng.integers(width // 10, width // 5))
        top = int(rng.integers(horizon // 4, horizon))
        shade = float(rng.uniform(0.3, 0.6))
        vis[top : horizon + height // 10, x : x + bw] = shade * np.array(
            [0.9, 0.85, 0.8], np.float32
        )
        ir[top : horizon + height // 10, x : x + bw] = 0.25 + 0.05 * shade
        for wy in range(top + 6, horizon, 14):
            for wx in range(x + 5, x + bw - 8, 12):
                lit = rng.random() < 0.3
                vis[wy : wy + 6, wx : wx + 5] = (0.95, 0.85, 0.5) if lit else (0.15, 0.15, 0.2)
                ir[wy : wy + 6, wx : wx + 5] += 0.06 if lit else 0.0
        x += bw + int(rng.integers(2, 10))
    # Road with lane markings: visible only in RGB.
    road_top = horizon + height // 10
    vis[road_top:] = 0.28
    ir[road_top:] = np.linspace(0.3, 0.4, height - road_top, dtype=np.float32)[:, None]
    for lx in range(0, width, width // 8):
        cv2.line(
            vis,
            (lx, height - 1),
            (width // 2 + (lx - width // 2) // 4, road_top),
            (0.9, 0.9, 0.9),
            2,
        )
    grain = rng.normal(0, 0.03, (height, width)).astype(np.float32)
    vis += grain[..., None]
    ir += cv2.GaussianBlur(grain, (0, 0), 3) * 0.5
    return vis, ir


def render_sequence(
    num_frames: int, height: int = 480, width: int = 640, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``num_frames`` pairs (IR uint8 H×W, VIS RGB uint8 H×W×3) of a slowly moving low-light scene."""
    if num_frames < 1 or height < 32 or width < 32:
        raise ValueError("need num_frames >= 1 and an image of at least 32×32")
    rng = np.random.default_rng(seed)
    vis_bg, ir_bg = _background(height, width, rng)
    ground = height * 2 // 5 + height // 10
    people = [
        (
            float(rng.uniform(0.1, 0.9) * width),
            float(rng.uniform(ground, height - height // 6)),
            float(rng.uniform(-2, 2)),
        )
        for _ in range(3)
    ]
    car_x, car_y = float(rng.uniform(0.1, 0.5) * width), float(ground + height // 8)
    frames = []
    for i in range(num_frames):
        vis = vis_bg.copy()
        ir = ir_bg.copy()
        scale = height / 480
        cx = int(car_x + 3 * i * scale)
        cw, ch = int(110 * scale), int(45 * scale)
        cv2.rectangle(vis, (cx, int(car_y)), (cx + cw, int(car_y) + ch), (0.2, 0.1, 0.1), -1)
        cv2.rectangle(ir, (cx, int(car_y)), (cx + cw, int(car_y) + ch), 0.6, -1)
        cv2.rectangle(
            ir, (cx + cw - int(25 * scale), int(car_y) + 5), (cx + cw, int(car_y) + ch - 5), 0.9, -1
        )
        for wheel in (cx + int(20 * scale), cx + cw - int(20 * scale)):
            cv2.circle(ir, (wheel, int(car_y) + ch), max(int(9 * scale), 2), 0.8, -1)
        for px, py, vx in people:
            x, y = int(px + vx * i * scale), int(py)
            hh = int(60 * scale)
            cv2.ellipse(
                vis, (x, y - hh // 2), (max(hh // 6, 2), hh // 2), 0, 0, 360, (0.18, 0.16, 0.15), -1
            )
            cv2.circle(vis, (x, y - hh - hh // 8), max(hh // 8, 2), (0.25, 0.2, 0.18), -1)
            cv2.ellipse(ir, (x, y - hh // 2), (max(hh // 6, 2), hh // 2), 0, 0, 360, 0.85, -1)
            cv2.circle(ir, (x, y - hh - hh // 8), max(hh // 8, 2), 0.95, -1)
        # Low light: dim the RGB frame and add sensor noise; IR sees in the dark.
        vis = vis * 0.35 + rng.normal(0, 0.02, vis.shape).astype(np.float32)
        ir = cv2.GaussianBlur(ir, (0, 0), 1.2) + rng.normal(0, 0.01, ir.shape).astype(np.float32)
        frames.append(
            (
                (np.clip(ir, 0, 1) * 255 + 0.5).astype(np.uint8),
                (np.clip(vis, 0, 1) * 255 + 0.5).astype(np.uint8),
            )
        )
    return frames
