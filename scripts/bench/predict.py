#!/usr/bin/env python3
"""The Python side of scripts/bench/predict.sh: what a user would write to predict image files
with a DINOv2 + linear head in PyTorch (timm's `vit_base_patch14_dinov2` or its S/L sizes, PIL,
torchvision transforms, a DataLoader), on the weights of the model `medfm export` wrote, so that
both sides compute the same model.

Subcommands:
  images DIR N             write N synthetic 1-2 MP images (half PNG, half JPEG) to DIR and
                           DIR/list.txt (kept when already there)
  predict MODEL LIST OUT --threads T --workers W --batch B
                           predict the images of LIST with the exported MODEL; writes OUT (path,
                           prob_<class>..., prediction) and prints
                           "Predicted N image(s) in S s (R images/s)"
  compare A.csv B.csv      the largest difference between the probabilities of two CSVs
  summary LOG              the table of a predict.sh log (per-round rates and their ratios)

The model: medfm's tensor names are its var-store names, `trunk.<DINOv2's official names>` and
`head.fc.{weight,bias}` (docs/outputs.md, "Exported models"), which are timm's names after
`trunk.` is dropped (and `head.fc.` becomes `head.`), except `pos_embed`: medfm stores
DINOv2's 37x37 grid and resizes it on every forward as the official `interpolate_pos_encoding`
does (bicubic, no antialias, scale factor (g + 0.1) / 37); here it is resized once, the same
way, into timm's fixed grid for the image size.
"""
import csv
import json
import math
import os
import re
import sys
import time

# bench_common.py lives in scripts/ or scripts/bench/: both are on the path.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))
import bench_common  # noqa: E402


def images(out, n):
    import numpy as np
    from PIL import Image

    os.makedirs(out, exist_ok=True)
    list_path = os.path.join(out, "list.txt")
    names = []
    # 1.2 to 1.9 megapixels, four aspect ratios.
    sizes = [(1280, 960), (1600, 1200), (1400, 1000), (1200, 1000)]
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        ext = "png" if i % 2 == 0 else "jpg"
        name = f"img_{i:04d}.{ext}"
        names.append(name)
        path = os.path.join(out, name)
        if os.path.exists(path):
            continue
        rng = np.random.default_rng(i)
        # A fundus-like picture: a lit disc with a radial falloff, a few darker curves, noise.
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        cy, cx, r = h / 2, w / 2, 0.45 * min(h, w)
        d = np.sqrt((y - cy) ** 2 + (x - cx) ** 2) / r
        base = np.clip(1.0 - d**2, 0, 1)
        for _ in range(6):
            a, b, c = rng.uniform(-1, 1, 3)
            curve = np.abs(np.sin(a * x / 90 + b * y / 70 + 6 * c))
            base *= 0.85 + 0.15 * curve
        tint = np.array([200, 110, 40], np.float32) * rng.uniform(0.8, 1.2, 3)
        img = base[..., None] * tint + rng.normal(0, 3, (h, w, 3))
        # Written under a temporary name, so an interrupted run leaves no partial image.
        tmp = f"{path}.tmp.{ext}"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            tmp, **({"quality": 90} if ext == "jpg" else {})
        )
        os.replace(tmp, path)
    with open(list_path, "w") as f:
        f.write("\n".join(names) + "\n")
    print(f"{n} images in {out}")


# medfm's DINOv2 trunks and timm's models of the same shape (the giant one's SwiGLU names differ).
TIMM_DINOV2 = {
    "dinov2_vits14": "vit_small_patch14_dinov2",
    "dinov2_vitb14": "vit_base_patch14_dinov2",
    "dinov2_vitl14": "vit_large_patch14_dinov2",
}


def dinov2_pos_embed(pe, img_size, patch=14):
    """DINOv2's `interpolate_pos_encoding` for an img_size x img_size input."""
    import torch.nn.functional as F

    cls, grid = pe[:, :1], pe[:, 1:]
    m = int(math.sqrt(grid.shape[1]))
    g = img_size // patch
    if g == m:
        return pe
    s = (g + 0.1) / m
    grid = F.interpolate(
        grid.reshape(1, m, m, -1).permute(0, 3, 1, 2),
        mode="bicubic",
        antialias=False,
        scale_factor=(s, s),
    )
    assert grid.shape[-2:] == (g, g), grid.shape
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, g * g, -1)], 1)


def build_transforms(prep):
    from torchvision import transforms as T

    t = prep["transforms"]
    known = {"Resize", "CenterCrop", "Normalize"}
    extra = set(t) - known
    if extra:
        sys.exit(f"the benchmark's reference pipeline handles {sorted(known)}, not {sorted(extra)}")
    steps = []
    if t.get("Resize", {}).get("apply"):
        # The reference's Resize: torchvision's bilinear on PIL images (PIL's resize).
        steps.append(T.Resize((t["Resize"]["height"], t["Resize"]["width"])))
    if t.get("CenterCrop", {}).get("apply"):
        steps.append(T.CenterCrop((t["CenterCrop"]["height"], t["CenterCrop"]["width"])))
    steps.append(T.ToTensor())
    if t.get("Normalize"):
        steps.append(T.Normalize(prep["mean"], prep["std"]))
    return T.Compose(steps)


class Files:
    def __init__(self, paths, transform, channels):
        self.paths, self.transform = paths, transform
        self.mode = "RGB" if channels == 3 else "L"

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with open(self.paths[i], "rb") as f:
            img = Image.open(f).convert(self.mode)
        return self.transform(img)


def predict(model_path, list_path, out, threads, workers, batch):
    global torch
    import timm
    import torch
    from safetensors import safe_open
    from torch.utils.data import DataLoader

    torch.set_num_threads(threads)
    with safe_open(model_path, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    spec, prep, classes = (json.loads(meta[k]) for k in ("model", "preprocessing", "classes"))
    timm_name = TIMM_DINOV2.get(spec["backbone"])
    if timm_name is None or spec["head"] != "none":
        sys.exit(f"expected one of {sorted(TIMM_DINOV2)} with the linear head, got {spec['backbone']} / {spec['head']}")
    names = classes["names"]
    model = timm.create_model(timm_name, pretrained=False, img_size=spec["img_size"], num_classes=len(names))
    state = {}
    for k, v in tensors.items():
        if k.startswith("trunk."):
            state[k[len("trunk.") :]] = v
        elif k.startswith("head.fc."):
            state["head." + k[len("head.fc.") :]] = v
    del state["mask_token"]  # DINOv2's masked-token embedding: unused by classification
    state["pos_embed"] = dinov2_pos_embed(state["pos_embed"], spec["img_size"])
    model.load_state_dict(state, strict=True)
    model.eval()

    base = os.path.dirname(list_path)
    with open(list_path) as f:
        paths = [os.path.join(base, line.strip()) for line in f if line.strip()]
    loader = DataLoader(
        Files(paths, build_transforms(prep), prep["channels"]),
        batch_size=batch,
        num_workers=workers,
        shuffle=False,
    )
    multilabel = classes["task"] == "multilabel"
    start = time.perf_counter()
    probs = []
    with torch.inference_mode():
        for x in loader:
            logits = model(x)
            probs.append(logits.sigmoid() if multilabel else logits.softmax(1))
    seconds = time.perf_counter() - start
    probs = torch.cat(probs).numpy()
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path"] + [f"prob_{n}" for n in names] + ["prediction"])
        for p, row in zip(paths, probs):
            if multilabel:
                pred = ";".join(n for n, v in zip(names, row) if v >= 0.5)
            else:
                pred = names[int(row.argmax())]
            w.writerow([p] + [repr(float(v)) for v in row] + [pred])
    print(f"Predicted {len(paths)} image(s) in {seconds:.1f} s ({len(paths) / seconds:.2f} images/s)")


def compare(a, b):
    def read(p):
        with open(p) as f:
            rows = list(csv.DictReader(f))
        return {os.path.basename(r["path"]): r for r in rows}

    ra, rb = read(a), read(b)
    common = sorted(set(ra) & set(rb))
    cols = [c for c in next(iter(ra.values())) if c.startswith("prob_")]
    worst = max(abs(float(ra[k][c]) - float(rb[k][c])) for k in common for c in cols)
    same = sum(ra[k]["prediction"] == rb[k]["prediction"] for k in common)
    print(f"{len(common)} images: max |probability difference| {worst:.2e}; same prediction for {same}")


def summary(log):
    """Rates from lines "ROUND SIDE wall=SECONDS Predicted N image(s) in S s (R images/s)"."""
    rows = {}
    pat = re.compile(r"^round (\d+) (\S+) wall=([\d.]+) .*\(([\d.]+) images/s")
    n = None
    for line in open(log):
        m = pat.match(line)
        if m:
            r, side, wall, rate = int(m[1]), m[2], float(m[3]), float(m[4])
            rows.setdefault(side, []).append((r, wall, rate))
            n = int(re.search(r"Predicted (\d+)", line)[1])
    med, ref = rows["medfm"], rows["python"]
    loop = bench_common.ratio([r for _, _, r in med], [r for _, _, r in ref])
    wall = bench_common.ratio([n / w for _, w, _ in med], [n / w for _, w, _ in ref])
    print("| side | predict loop, images/s | whole command, images/s |")
    print("|---|---|---|")
    for side, vals in (("timm + PIL + DataLoader", ref), ("medfm predict", med)):
        loops = ", ".join(f"{r:.2f}" for _, _, r in vals)
        walls = ", ".join(f"{n / w:.2f}" for _, w, _ in vals)
        print(f"| {side} | {loops} | {walls} |")
    print(f"| **medfm / Python** (median of per-round ratios) | **{loop:.2f}x** | **{wall:.2f}x** |")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "images":
        images(args[0], int(args[1]))
    elif cmd == "predict":
        opts = dict(zip(args[3::2], args[4::2]))
        predict(args[0], args[1], args[2], int(opts["--threads"]), int(opts["--workers"]), int(opts["--batch"]))
    elif cmd == "compare":
        compare(args[0], args[1])
    elif cmd == "summary":
        summary(args[0])
    else:
        sys.exit(__doc__)
