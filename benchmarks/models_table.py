"""Print the docs/MODELS.md table from the bundled model files' metadata (nothing is typed by hand)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidstyle.models.files import read_metadata  # noqa: E402

rows = ["| style | arch | steps | size | loss net | final content | final style | final temporal | train time (CPU) | file size |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
for p in sorted(Path("vidstyle/models/bundled").glob("*.safetensors")):
    m = read_metadata(p)
    t = json.loads(m["training"])
    a = json.loads(m["arch"])
    fl = t.get("final_losses", {})
    rows.append(f"| {p.stem} | {a['arch']} | {t['steps']} | {t['size']} | {t['loss_net']} | {fl.get('content', 0):.4f} | "
                f"{fl.get('style', 0):.2e} | {fl.get('temporal', 0):.2e} | {t['seconds']:.0f} s | {p.stat().st_size / 1e6:.2f} MB |")
print("\n".join(rows))
