"""The styles a live session cycles through (n/p and number keys): trained styles and pictures, loaded on first use."""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import VidstyleError
from ..models import registry
from ..options import PaintOptions
from ..painters import light, new_painter, pick_device

log = logging.getLogger("vidstyle")


class StyleBank:
    """Every bundled and user style (each style of a multi-style model too), loaded on first use and kept, after
    the styles and pictures asked for.

    ``styles`` (or ``paint.style``/``paint.mix`` when none are given) come first, in order: style names, pictures
    (``my_painting.jpg``) and folders of pictures (each picture in it; ``rescan`` adds the ones that appear later).
    Every style is painted with the rest of ``paint``, on its device, for live mode (``realtime``) by default.

    Pictures share one network (``PictureStyle``): switching between them changes its style vector only. Their
    vectors are computed on a background thread from the start (``ready`` says when one is), so that a key
    never waits for one on the frame path.
    """

    def __init__(self, paint: PaintOptions, *, realtime: bool = True, styles: tuple[str, ...] = ()):
        from concurrent.futures import ThreadPoolExecutor

        self.options = paint.replace(style=None, mix=None)  # each style is its own; the rest the same for all
        self.device = pick_device(paint.device)
        self.realtime = realtime
        self.style_size = paint.style_size
        self.specs: list[tuple[str, dict | None]] = []
        self.folders: list[Path] = []
        self._vectors: dict[str, object] = {}  # picture path -> Future of its style vector
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vidstyle-vectors")
        self._pictures = None  # the Stylizer every picture paints with (one network), made on first use
        asked = list(styles) or ([paint.style] if paint.style or paint.mix else [])
        for spec in asked:  # in the order given: a folder's pictures where the folder is named
            if Path(spec).is_dir():
                self.folders.append(Path(spec))
                self._scan(Path(spec))
            else:
                self._add(spec, paint.mix if len(asked) == 1 else None)
        if asked and not self.specs:
            raise VidstyleError(f"no pictures in {', '.join(map(str, self.folders))} (jpg, png, webp, bmp, tiff, gif)")
        # every listed name resolves to its own style (a shadowed one is listed as MODEL:STYLE)
        names = [e.name for e in registry.list_styles() if e.error is None]
        first = self.specs[0] if self.specs else (names[0] if names else registry.default_style(), None)
        self.specs += [(n, None) for n in names if (n, None) not in self.specs]
        if first not in self.specs:
            self.specs.insert(0, first)
        self.start = self.specs.index(first)
        self._cache: dict[int, object] = {}

    def _add(self, spec: str, mix: dict | None = None) -> None:
        from ..models.picture_style import is_picture

        if (spec, mix) in self.specs:
            return
        self.specs.append((spec, mix))
        if is_picture(spec) and mix is None:
            self._vectors[spec] = self._pool.submit(self._vector, spec)

    def _vector(self, spec: str):
        from ..io.pictures import read_picture
        from ..models.picture_style import style_vector

        pic = read_picture(spec)
        return style_vector(pic, self.style_size), pic.notes

    def _scan(self, folder: Path) -> None:
        """Add the pictures of ``folder`` not in the bank yet, by name."""
        from ..io.pictures import PICTURE_SUFFIXES

        try:
            found = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in PICTURE_SUFFIXES and p.is_file())
        except OSError:
            return
        for spec in found:
            self._add(spec)

    def rescan(self) -> list[str]:
        """Add the pictures that appeared in the folders given since the last call; returns their labels."""
        before = len(self.specs)
        for folder in self.folders:
            self._scan(folder)
        return [self.label_of(i) for i in range(before, len(self.specs))]

    def __len__(self) -> int:
        return len(self.specs)

    def ready(self, i: int) -> bool:
        """Whether style ``i`` can be painted without waiting (a picture's vector is computed)."""
        future = self._vectors.get(self.specs[i][0]) if self.specs[i][1] is None else None
        return future is None or future.done()

    def __getitem__(self, i: int):
        """Style ``i``'s painter (a ``Stylizer``, or the light install's ``FramePainter``)."""
        spec, mix = self.specs[i]
        future = self._vectors.get(spec) if mix is None else None
        if future is not None:
            return self._picture(spec, future)
        if i not in self._cache:
            from ..api import painting_model
            model = painting_model(spec, mix=mix, style_size=self.style_size)
            self._cache[i] = new_painter(model, self.device, options=self.options, realtime=self.realtime)
        return self._cache[i]

    def _picture(self, spec: str, future):
        """The pictures' Stylizer, painting ``spec`` (its vector from ``future``: waits if not ready)."""
        from ..models.picture_style import label_of, new_model

        vector, notes = future.result()  # a picture that cannot be read raises its one-line error here
        label = label_of(spec)
        if self._pictures is None:
            model = new_model({label: vector}, {label: spec}, self.device, light=light())
            self._pictures = new_painter(model, self.device, options=self.options, realtime=self.realtime)
        model = self._pictures.model
        if label not in model.vectors:
            for note in notes:
                log.warning("%s", note)
            model.vectors[label], model.sources[label] = vector, spec
            model.styles.append(label)
        if model.weights != {label: 1.0}:
            model.label = model.select(label)
            model.content_vector = None  # --strength's content vector belongs to the stream, but is cheap to redo
        return self._pictures

    def label_of(self, i: int) -> str:
        """Style ``i``'s name, without loading it."""
        from ..models.picture_style import label_of

        spec, mix = self.specs[i]
        return label_of(spec) if spec in self._vectors and mix is None else str(spec)

    def label(self, i: int) -> str:
        spec, mix = self.specs[i]
        if spec in self._vectors and mix is None:
            return self.label_of(i)
        st = self[i]
        return getattr(st.model, "label", None) or st.name

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
