"""Side-by-side mosaic of fused results: one row per pair, IR | VIS | each named folder.

    python -m training.compare_mosaic --val ../shared/data/val/msrs100 --pairs 00537D 00878N \
        --method SeAFusion=../shared/data/val/msrs100_peers/SeAFusion --method ours=runs/x \
        --out docs/images/compare.jpg

Every tile is scaled to ``--tile-width`` and labelled; files are matched by stem, so PNG and JPG
outputs mix. Pictures are how gains from noise or saturation show (training/results).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from sgdfuse_ros.cli.common import positive_int
from sgdfuse_ros.imaging import require_folder


def find_image(folder: Path, stem: str) -> Path:
    matches = sorted(p for p in require_folder(folder).iterdir() if p.stem == stem)
    if not matches:
        raise SystemExit(f"no image named {stem}.* in {folder}")
    return matches[0]


def labelled_folder(item: str, flag: str) -> tuple[str, Path]:
    """``LABEL=FOLDER`` of a command-line flag, the folder checked to exist."""
    label, sep, folder = item.partition("=")
    if not sep or not Path(folder).is_dir():
        raise SystemExit(f"{flag} {item}: expected LABEL=FOLDER with an existing folder")
    return label, Path(folder)


def tile(path: Path, label: str, width: int) -> np.ndarray:
    """The image as BGR, scaled to ``width``, with its label in the top-left corner."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    height = round(image.shape[0] * width / image.shape[1])
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    cv2.putText(image, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(
        image, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA
    )
    return image


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--val", type=Path, required=True, help="folder with ir/ and vi/")
    p.add_argument("--pairs", nargs="+", required=True, help="file stems, one row each")
    p.add_argument("--method", action="append", default=[], metavar="LABEL=FOLDER")
    p.add_argument("--tile-width", type=positive_int, default=320)
    p.add_argument("--out", type=Path, required=True, help=".jpg or .png")
    args = p.parse_args(argv)
    if args.out.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise SystemExit(f"--out {args.out}: name a .jpg or .png file")
    methods = [labelled_folder(item, "--method") for item in args.method]
    rows = []
    for stem in args.pairs:
        columns = [("IR", args.val / "ir"), ("VIS", args.val / "vi"), *methods]
        tiles = [
            tile(find_image(folder, stem), f"{label} {stem}", args.tile_width)
            for label, folder in columns
        ]
        for (label, folder), image in zip(columns, tiles, strict=True):
            if image.shape != tiles[0].shape:
                raise SystemExit(
                    f"{label}: {stem} in {folder} has another aspect ratio than its infrared "
                    "source (a fused image of another pair or size?)"
                )
        rows.append(np.hstack(tiles))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from sgdfuse_ros.cli.main import run_tool

    run_tool(main, "training.compare_mosaic")
