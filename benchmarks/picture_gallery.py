"""The README's gallery row for pictures as styles: each picture above, a photo and a video frame painted in its style.

    python benchmarks/picture_gallery.py A.jpg B.jpg ... --out docs/pictures/gallery_row.jpg

Painted as `vidstyle image --style PICTURE` paints (the default --style-size and brush), tiles 256 px wide.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.styles_report import FRAMES, PREVIEW, frame, grid, label, photo, tile  # noqa: E402
from vidstyle.api import make_stylizer  # noqa: E402
from vidstyle.io.images import read_image  # noqa: E402
from vidstyle.models.picture_style import label_of  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pictures", nargs="+")
    ap.add_argument("--out", type=Path, default=Path("docs/pictures/gallery_row.jpg"))
    ap.add_argument("--photo", default=PREVIEW[1])
    a = ap.parse_args()
    shot, still = photo(a.photo), frame(FRAMES[0])
    columns = [[label(tile(shot, 256), "photo"), label(tile(still, 256), "video frame"),
                label(tile(shot, 256), "(the input)")]]
    columns[0] = [columns[0][2], columns[0][0], columns[0][1]]
    for p in a.pictures:
        st = make_stylizer(p, device="cpu")
        columns.append([label(tile(read_image(p), 256), label_of(p)), tile(st(shot[None])[0], 256),
                        tile(st(still[None])[0], 256)])
    columns[0][0] = np.full_like(columns[0][0], 24)
    rows = [list(r) for r in zip(*columns)]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), cv2.cvtColor(grid(rows), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(a.out)


if __name__ == "__main__":
    main()
