"""Measure every style of a model against its painting: the figures and previews of docs/MODELS.md.

    python benchmarks/styles_report.py vidstyle/models/bundled/paintings.safetensors --out docs/models

For each style:
- colour: the Lab colour-statistics distance (``vidstyle.evaluate.colour_distance``) of 24 held-out photos,
  painted, to the painting; the unpainted photos' distance beside it;
- style loss of the network's picture relative to a Gatys optimisation (``vidstyle image --optimize``) of the
  same photo, both measured with the same loss network and style picture, and per loss-network layer
  (``style_layers``: which scale of the painting's texture is missing);
- a 512-px preview: the painting, the Gatys result, 4 photos and 2 video frames painted by the network.
Also writes a gallery (one photo and one video frame in every style) and report.json.
Gatys results are cached in the output folder (they take minutes each on a CPU).

    python benchmarks/styles_report.py --pictures A.jpg B.jpg --out docs/pictures

measures pictures as styles instead (``--style A.jpg``: Ghiasi's arbitrary-style network, ``--style-size``):
each picture is a style named by its file stem, measured against the picture itself; report.json also gets
the median style loss / Gatys's of the bundled styles (docs/models/report.json) to compare against.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidstyle.api import make_stylizer  # noqa: E402
from vidstyle.evaluate import colour_distance, perceptual  # noqa: E402
from vidstyle.io.images import read_image, write_image  # noqa: E402
from vidstyle.models.files import read_metadata  # noqa: E402
from vidstyle.train.gatys import optimize_image  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Never used in training: the first 6 (sorted) of four content folders; training reads a copy without them.
HELD_OUT = [f"{d}/{n}" for d, names in {
    "bsds500": ["100007", "100039", "100075", "100080", "100098", "100099"],
    "imagenet_det200": ["n00007846_147031_person", "n00007846_149204_person", "n00007846_160891_person",
                        "n00007846_98724_person", "n01443537_11099_goldfish", "n01443537_2625_goldfish"],
    "sun_hays80": ["abbey_sun_asztnlqhlrvirneh", "aqueduct_sun_ancegghzusmmvzjn", "badlands_sun_bvwwfrhtvupdxldb",
                   "balcony_interior_sun_bammhtthmkjntkqh", "barn_sun_btulbiaoilnxcseh",
                   "baseball_field_sun_astiuxzpytnbrwxr"],
    "urban100": ["img_001", "img_002", "img_003", "img_004", "img_005", "img_006"],
}.items() for n in names]
PREVIEW = ["sun_hays80/abbey_sun_asztnlqhlrvirneh", "bsds500/100075", "imagenet_det200/n00007846_147031_person",
           "urban100/img_004"]
FRAMES = ["davis2016/dog/00030.jpg", "vspw_aot_demo/1001_3iEIq5HBY1s"]  # a file, or the middle of a folder
GATYS_SIDE = 384
BUNDLED = Path(__file__).resolve().parents[1] / "vidstyle" / "models" / "bundled" / "paintings.safetensors"
BUNDLED_REPORT = Path(__file__).resolve().parents[1] / "docs" / "models" / "report.json"


def training_photos(content: Path = DATA / "content") -> list[tuple[Path, str]]:
    """(path, path relative to ``content``) of every photo below ``content`` but the held-out ones: what the
    bundled model trains on (benchmarks/train_bundled.sh, benchmarks/gpu_payload.py)."""
    held = {f"{n}.jpg" for n in HELD_OUT}
    rels = ((p, p.relative_to(content).as_posix()) for p in sorted(content.rglob("*.jpg")))
    return [(p, rel) for p, rel in rels if rel not in held]


def bundled_styles(model: Path = BUNDLED) -> list[str]:
    """The styles of a model file, in its order (a style picture's stem is the style's name)."""
    return json.loads(read_metadata(model)["styles"])


def style_pictures(model: str | None, pictures: list[str] | None) -> tuple[dict[str, str], dict[str, Path]]:
    """({style: what make_stylizer takes}, {style: its painting}) for a model file's styles (their pictures in
    ../shared/data/style), or for pictures as styles (each one's label is its file stem; its painting, itself)."""
    if pictures:
        from vidstyle.models.picture_style import label_of

        labels = [label_of(p) for p in pictures]
        return dict(zip(labels, pictures)), {s: Path(p) for s, p in zip(labels, pictures)}
    from vidstyle.models.style_file import is_style_file, style_header

    if is_style_file(model):  # your own style (vidstyle train PICTURE): one style, painted with its base network
        style, _, _, meta = style_header(Path(model))
        picture = json.loads(meta.get("training", "{}")).get("picture", f"{style}.jpg")
        return {style: str(model)}, {style: DATA / "style" / picture}
    meta = read_metadata(Path(model))
    names = json.loads(meta["styles"])
    training = json.loads(meta.get("training", "{}"))
    # the trained styles' pictures (a --norm-only file also holds styles trained earlier: NAME.jpg)
    images = dict(zip(training.get("trained_styles", names), training.get("style_images", [f"{s}.jpg" for s in names])))
    return {s: f"{model}:{s}" for s in names}, {s: DATA / "style" / images.get(s, f"{s}.jpg") for s in names}


def median_vs_gatys(report: Path = BUNDLED_REPORT) -> float | None:
    """The median style loss / Gatys's over the styles of a report.json (None without one)."""
    if not report.is_file():
        return None
    vals = [r["style_loss_vs_gatys"] for r in json.loads(report.read_text())["styles"].values() if "style_loss_vs_gatys" in r]
    return round(float(np.median(vals)), 2) if vals else None


def photo(name: str) -> np.ndarray:
    return read_image(DATA / "content" / f"{name}.jpg")


def frame(name: str) -> np.ndarray:
    p = DATA / "video" / name
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".jpg", ".png"))
        p = files[len(files) // 2]
    return read_image(p)


def tile(rgb: np.ndarray, side: int = 512) -> np.ndarray:
    """Fit into side x side*9/16... simply: longer side = side, on a dark 512 x 384 canvas."""
    h, w = rgb.shape[:2]
    s = min(side / w, (side * 3 // 4) / h)
    img = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    canvas = np.full((side * 3 // 4, side, 3), 24, np.uint8)
    y, x = (canvas.shape[0] - img.shape[0]) // 2, (canvas.shape[1] - img.shape[1]) // 2
    canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
    return canvas


def layer_errors(pictures: dict[str, np.ndarray], painting: np.ndarray, loss_net: str) -> dict[str, dict]:
    """{name: {layer: relative Gram error}} of each (H, W, 3) uint8 picture against the painting, as the
    relative style loss counts them (each layer's error over the painting's own Gram)."""
    import torch

    from vidstyle.train import losses as L
    from vidstyle.train.lossnet import load_loss_net

    vgg = load_loss_net(loss_net)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    with torch.no_grad():
        grams = {k: L.gram(v) for k, v in vgg(to_t(painting)).items()}
        norms = L.gram_norms(grams)
        out = {}
        for name, pic in pictures.items():
            f = vgg(to_t(pic))
            out[name] = {k: round(float(torch.nn.functional.mse_loss(L.gram(f[k]), grams[k]) / norms[k]), 4)
                         for k in L.STYLE_LAYERS}
    return out


def label(img: np.ndarray, text: str) -> np.ndarray:
    """``text`` in white on a dark band at the top left of a copy of ``img``.

    (Not a black outline drawn thicker under the text: OpenCV 5 widens the letters with the thickness,
    so the outline's letters drift off the white ones: "kanagawaa".)
    """
    img = img.copy()
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.6
    (w, h), base = cv2.getTextSize(text, font, scale, 1)
    band = img[4:4 + h + base + 8, 2:2 + w + 12]
    band[:] = (band * 0.35).astype(np.uint8)
    cv2.putText(img, text, (8, 8 + h), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.concatenate(r, 1) for r in rows], 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="a model file (single or multi-style), or a style file")
    ap.add_argument("--pictures", nargs="+", metavar="PICTURE", help="pictures as styles, instead of a model file")
    ap.add_argument("--style-size", type=int, default=None, help="with --pictures: the vector's picture size")
    ap.add_argument("--out", default="docs/models", help="folder for previews, gallery.png and report.json")
    ap.add_argument("--styles", nargs="*", help="only these styles of the model")
    ap.add_argument("--gatys-steps", type=int, default=200)
    ap.add_argument("--loss-net", default="hed")
    ap.add_argument("--no-gatys", action="store_true", help="skip the Gatys reference (quick look)")
    args = ap.parse_args()
    if bool(args.model) == bool(args.pictures):
        ap.error("give either a model file or --pictures")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    specs, paintings = style_pictures(args.model, args.pictures)
    styles = args.styles or list(specs)
    photos = {n: photo(n) for n in HELD_OUT}
    frames = [frame(n) for n in FRAMES]
    report = {"model": Path(args.model).name if args.model else "pictures", "held_out": HELD_OUT,
              "preview_photos": PREVIEW, "frames": FRAMES, "styles": {}}
    if args.pictures:
        report.update(pictures={s: str(p) for s, p in paintings.items()}, style_size=args.style_size,
                      bundled_median_style_loss_vs_gatys=median_vs_gatys())
    gallery = [[label(tile(photos[PREVIEW[0]], 256), "photo"), label(tile(frames[0], 256), "video frame")]]
    for style in styles:
        t0 = time.perf_counter()
        painting = read_image(paintings[style])
        size = {"style_size": args.style_size} if args.style_size else {}
        st = make_stylizer(specs[style], device="cpu", **size)
        painted = {n: st(p[None])[0] for n, p in photos.items()}
        colour = float(np.mean([colour_distance(p, painting) for p in painted.values()]))
        colour_in = float(np.mean([colour_distance(p, painting) for p in photos.values()]))
        row = {"colour_distance": round(colour, 2), "colour_distance_unstyled": round(colour_in, 2)}
        first = photos[PREVIEW[0]]
        tiles = [label(tile(painting), f"{style} (painting)")]
        if not args.no_gatys:
            cache = out / f"gatys_{style}.png"
            if cache.exists():
                gatys = read_image(cache)
            else:
                gatys = optimize_image(first, painting, steps=args.gatys_steps, loss_net=args.loss_net, device="cpu",
                                       max_side=GATYS_SIDE)
                write_image(cache, gatys, overwrite=True)
            h, w = gatys.shape[:2]
            mine = cv2.resize(painted[PREVIEW[0]], (w, h), interpolation=cv2.INTER_AREA)
            small_painting = cv2.resize(painting, None, fx=GATYS_SIDE / max(painting.shape[:2]),
                                        fy=GATYS_SIDE / max(painting.shape[:2]), interpolation=cv2.INTER_AREA)
            ref = cv2.resize(first, (w, h), interpolation=cv2.INTER_AREA)
            s_net, _ = perceptual([mine], [ref], small_painting, args.loss_net)
            s_gatys, _ = perceptual([gatys], [ref], small_painting, args.loss_net)
            s_in, _ = perceptual([ref], [ref], small_painting, args.loss_net)
            row.update(style_loss=s_net, style_loss_gatys=s_gatys, style_loss_photo=s_in,
                       style_loss_vs_gatys=round(s_net / s_gatys, 2),
                       style_layers=layer_errors({"network": mine, "gatys": gatys, "photo": ref}, small_painting,
                                                 args.loss_net))
            tiles.append(label(tile(gatys), "Gatys (image --optimize)"))
        tiles += [label(tile(painted[n]), "network") for n in PREVIEW]
        tiles += [label(tile(f), "video frame") for f in (st(f[None])[0] for f in frames)]
        while len(tiles) % 4:
            tiles.append(np.full_like(tiles[0], 24))
        cv2.imwrite(str(out / f"{style}.jpg"), cv2.cvtColor(grid([tiles[i:i + 4] for i in range(0, len(tiles), 4)]),
                                                             cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        gallery.append([label(tile(painted[PREVIEW[0]], 256), style), label(tile(st(frames[0][None])[0], 256), style)])
        row["seconds"] = round(time.perf_counter() - t0, 1)
        report["styles"][style] = row
        print(style, json.dumps(row), flush=True)
    # gallery: styles across, photo row and frame row
    cols = [list(c) for c in zip(*gallery)]
    cv2.imwrite(str(out / "gallery.jpg"), cv2.cvtColor(grid(cols), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print("| style | colour distance (unstyled) | style loss / Gatys | per layer, network / Gatys |\n| --- | --- | --- | --- |")
    for s, r in report["styles"].items():
        lay = r.get("style_layers")
        per = ", ".join(f"{k} {v / max(lay['gatys'][k], 1e-6):.0f}x" for k, v in lay["network"].items()) if lay else "-"
        print(f"| {s} | {r['colour_distance']} ({r['colour_distance_unstyled']}) | {r.get('style_loss_vs_gatys', '-')} | {per} |")
    if report.get("bundled_median_style_loss_vs_gatys") is not None:
        print(f"bundled styles' median style loss / Gatys's: {report['bundled_median_style_loss_vs_gatys']}")


if __name__ == "__main__":
    main()
