"""A folder of links to the training photos: every photo of CONTENT but the 24 held-out ones that
docs/MODELS.md measures colour on (styles_report.HELD_OUT), at the same relative paths.

    python benchmarks/link_training_photos.py ../shared/data/content RUN/photos
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from styles_report import training_photos  # noqa: E402

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for p, rel in training_photos(src):
    (dst / rel).parent.mkdir(parents=True, exist_ok=True)
    (dst / rel).symlink_to(p)
