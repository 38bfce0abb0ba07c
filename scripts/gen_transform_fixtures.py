#!/usr/bin/env python3
"""Fixtures for medfm's transforms and decoding: what torchvision (on PIL images) and PIL
produce for small test images, for tests/data_transforms.rs.

Writes tests/fixtures/data/transforms/: input images (PNG/JPEG), expected outputs (PNG for
uint8 results, raw little-endian float32 for tensors) and manifest.json listing each case:
{"name", "input", "mode" (RGB or L: how the input is loaded, as pil_loader does), "op",
"args", "output", "kind" ("png" or "f32"), "shape" (for f32)}.

Deterministic transforms are called with fixed parameters through torchvision.transforms.functional
(the random transforms draw exactly these parameters and then call these functions).

Usage: .venv/bin/python scripts/gen_transform_fixtures.py [out_dir]
(needs torchvision and Pillow: scripts/setup.sh --ref; and jpegtran)
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision.transforms import functional as F
from torchvision.transforms import InterpolationMode

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "tests", "fixtures", "data", "transforms")
os.makedirs(OUT, exist_ok=True)
rng = np.random.RandomState(0)
cases = []


def test_image(w, h, channels):
    """Smooth gradients, hard-edged blocks and noise: stresses resampling and rounding."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for c in range(channels):
        base = 128 + 90 * np.sin(x / (5 + 3 * c)) * np.cos(y / (7 + c)) + (x - y) * 0.6
        block = ((x // 9 + y // 11 + c) % 2) * 50 - 25
        planes.append(base + block + rng.normal(0, 12, size=(h, w)))
    arr = np.clip(np.stack(planes, -1), 0, 255).round().astype(np.uint8)
    return arr[..., 0] if channels == 1 else arr


def save_input(name, img, **kw):
    img.save(os.path.join(OUT, name), **kw)
    return name


def add(name, input_name, mode, op, args, out):
    case = {"name": name, "input": input_name, "mode": mode, "op": op, "args": args}
    if isinstance(out, Image.Image):
        case.update(kind="png", output=name + ".png")
        out.save(os.path.join(OUT, name + ".png"))
    else:
        t = out.detach().to(torch.float32).contiguous()
        case.update(kind="f32", output=name + ".f32", shape=list(t.shape))
        t.numpy().astype("<f4").tofile(os.path.join(OUT, name + ".f32"))
    cases.append(case)


def load(name, mode):
    with open(os.path.join(OUT, name), "rb") as f:
        return Image.open(f).convert(mode)  # the reference's pil_loader


rgb_in = save_input("rgb_97x73.png", Image.fromarray(test_image(97, 73, 3), "RGB"))
gray_in = save_input("gray_61x45.png", Image.fromarray(test_image(61, 45, 1), "L"))
square_in = save_input("rgb_40x40.png", Image.fromarray(test_image(40, 40, 3), "RGB"))

for inp, mode in [(rgb_in, "RGB"), (gray_in, "L")]:
    img = load(inp, mode)
    tag = mode.lower()
    # Resize (bilinear, PIL antialias): down, up, one axis, extreme, the reference's 256x256.
    for h, w in [(40, 55), (150, 200), (img.height, 30), (1, 1), (256, 256), (7, 90)]:
        add(f"resize_{tag}_{h}x{w}", inp, mode, "resize", {"h": h, "w": w},
            F.resize(img, [h, w], InterpolationMode.BILINEAR))
    # RandomResizedCrop's crop + resize (bilinear), and MultiCrop's bicubic.
    for (i, j, h, w, s, interp) in [(3, 5, 30, 41, 24, "bilinear"), (0, 0, 20, 20, 64, "bilinear"),
                                    (10, 2, 33, 27, 19, "bicubic"), (1, 1, 40, 40, 96, "bicubic")]:
        mode_i = InterpolationMode.BILINEAR if interp == "bilinear" else InterpolationMode.BICUBIC
        add(f"resized_crop_{tag}_{i}_{j}_{h}x{w}_{s}_{interp}", inp, mode, "resized_crop",
            {"top": i, "left": j, "h": h, "w": w, "size": s, "interp": interp},
            F.resized_crop(img, i, j, h, w, [s, s], mode_i))
    # CenterCrop: odd offsets (round half to even), identity, larger than the image (padding).
    for h, w in [(20, 30), (img.height - 3, img.width - 5), (img.height, img.width),
                 (img.height + 7, img.width + 4), (img.height + 2, 10)]:
        add(f"center_crop_{tag}_{h}x{w}", inp, mode, "center_crop", {"h": h, "w": w},
            F.center_crop(img, [h, w]))
    add(f"hflip_{tag}", inp, mode, "hflip", {}, F.hflip(img))
    add(f"vflip_{tag}", inp, mode, "vflip", {}, F.vflip(img))
    # RandomCrop with padding: pad then crop at (i, j).
    add(f"pad_crop_{tag}", inp, mode, "pad_crop", {"padding": 4, "top": 1, "left": 7, "h": 32, "w": 32},
        F.crop(F.pad(img, 4, fill=0), 1, 7, 32, 32))
    # ToTensor + Normalize (the dataset's mean/std).
    mean, std = ([0.415, 0.221, 0.073], [0.275, 0.150, 0.081]) if mode == "RGB" else ([0.286], [0.267])
    add(f"to_tensor_{tag}", inp, mode, "to_tensor", {}, F.to_tensor(img))
    add(f"normalize_{tag}", inp, mode, "normalize", {"mean": mean, "std": std},
        F.normalize(F.to_tensor(img), mean, std))
    # ColorJitter's four adjustments with fixed factors.
    for f in [0.0, 0.55, 1.0, 1.35, 2.5]:
        add(f"brightness_{tag}_{f}", inp, mode, "brightness", {"factor": f}, F.adjust_brightness(img, f))
        add(f"contrast_{tag}_{f}", inp, mode, "contrast", {"factor": f}, F.adjust_contrast(img, f))
        add(f"saturation_{tag}_{f}", inp, mode, "saturation", {"factor": f}, F.adjust_saturation(img, f))
    for f in [-0.5, -0.1, 0.03, 0.1, 0.37, 0.5]:
        add(f"hue_{tag}_{f}", inp, mode, "hue", {"factor": f}, F.adjust_hue(img, f))
    add(f"grayscale_{tag}", inp, mode, "grayscale", {},
        F.rgb_to_grayscale(img, num_output_channels=len(img.getbands())))
    add(f"solarize_{tag}", inp, mode, "solarize", {"threshold": 128}, F.solarize(img, 128))
    add(f"solarize_{tag}_77", inp, mode, "solarize", {"threshold": 77.5}, F.solarize(img, 77.5))
    # RandomRotation / RandomAffine (nearest, fill 0) and RandomPerspective (bilinear).
    for a in [5.3, -17.0, 180.0, 33.3, 359.0]:
        add(f"rotate_{tag}_{a}", inp, mode, "rotate", {"angle": a}, F.rotate(img, a))
    for (a, t, s, sh) in [(3.0, (4, -2), 1.1, (0.2, 0.0)), (0.0, (0, 0), 0.9, (0.0, 0.0)),
                          (-12.5, (-7, 5), 1.7, (-0.15, 0.0)), (0.0, (3, 1), 1.0, (0.0, 0.0))]:
        add(f"affine_{tag}_{a}_{t[0]}_{t[1]}_{s}_{sh[0]}", inp, mode, "affine",
            {"angle": a, "translate": list(t), "scale": s, "shear": list(sh)},
            F.affine(img, a, list(t), s, list(sh)))
    w, h = img.size
    for end in [[[3, 2], [w - 2, 5], [w - 6, h - 1], [1, h - 4]], [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]],
                [[9, 7], [w - 11, 1], [w - 1, h - 9], [6, h - 2]]]:
        start = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
        add(f"perspective_{tag}_{end[0][0]}_{end[2][1]}", inp, mode, "perspective",
            {"start": start, "end": end}, F.perspective(img, start, end, InterpolationMode.BILINEAR))
    # RandomGaussianBlur: PIL's GaussianBlur(radius).
    for r in [0.1, 0.6, 1.0, 1.7, 2.0]:
        add(f"blur_{tag}_{r}", inp, mode, "blur", {"radius": r}, img.filter(ImageFilter.GaussianBlur(radius=r)))

sq = load(square_in, "RGB")
for a in [90.0, 270.0, -90.0]:
    add(f"rotate_square_{a}", square_in, "RGB", "rotate", {"angle": a}, F.rotate(sq, a))

# Decoding: pil_loader's convert('RGB') / convert('L') of other PNG/JPEG flavours.
base = test_image(33, 21, 3)
variants = {
    "palette.png": Image.fromarray(base, "RGB").convert("P", palette=Image.ADAPTIVE, colors=50),
    "rgba.png": Image.fromarray(np.dstack([base, base[..., :1]]), "RGBA"),
    "la.png": Image.fromarray(np.dstack([base[..., 0], base[..., 1]]), "LA"),
    "gray1bit.png": Image.fromarray(base[..., 0] > 128).convert("1"),
}
for name, img in variants.items():
    inp = save_input("decode_" + name, img)
    for mode in ["RGB", "L"]:
        add(f"decode_{name}_{mode.lower()}", inp, mode, "decode", {}, load(inp, mode))
for name, img, q in [("rgb.jpg", Image.fromarray(base, "RGB"), 90), ("gray.jpg", Image.fromarray(base[..., 0], "L"), 85)]:
    inp = save_input("decode_" + name, img, quality=q)
    for mode in ["RGB", "L"]:
        add(f"decode_{name}_{mode.lower()}", inp, mode, "decode_jpeg", {}, load(inp, mode))
# 16-bit: RGB keeps PIL's high byte; gray is medfm's documented deviation round(v * 255 / 65535)
# (PIL clips it at 255), so the expected output is computed here, not by PIL.
g16 = (np.linspace(0, 65535, 33 * 21).reshape(21, 33)).astype(np.uint16)
inp = save_input("decode_gray16.png", Image.fromarray(g16))
scaled = np.round(g16.astype(np.float64) * 255 / 65535).astype(np.uint8)
add("decode_gray16_l", inp, "L", "decode", {}, Image.fromarray(scaled, "L"))
add("decode_gray16_rgb", inp, "RGB", "decode", {}, Image.fromarray(np.dstack([scaled] * 3), "RGB"))

# More JPEG flavours (ISIC and CheXpert are JPEG): 4:4:4, 4:2:2 and 4:2:0 chroma, baseline and
# progressive, odd sizes (partial MCUs); a progressive gray one. medfm must equal PIL exactly.
odd = test_image(37, 23, 3)
for sub in [0, 1, 2]:
    for prog in [False, True]:
        name = f"rgb_sub{sub}_prog{int(prog)}.jpg"
        img = Image.fromarray(odd, "RGB")
        inp = save_input("decode_" + name, img, quality=80, subsampling=sub, progressive=prog)
        for mode in ["RGB", "L"]:
            add(f"decode_{name}_{mode.lower()}", inp, mode, "decode_jpeg", {}, load(inp, mode))
inp = save_input("decode_gray_prog.jpg", Image.fromarray(odd[..., 1], "L"), quality=80,
                 progressive=True)
for mode in ["RGB", "L"]:
    add(f"decode_gray_prog.jpg_{mode.lower()}", inp, mode, "decode_jpeg", {}, load(inp, mode))

# Arithmetic-coded JPEG (PIL's libjpeg-turbo decodes it; Pillow cannot write it): the 4:2:0
# baseline file above, losslessly recoded by jpegtran (Debian: libjpeg-turbo-progs).
if shutil.which("jpegtran") is None:
    sys.exit("jpegtran not found (Debian: apt install libjpeg-turbo-progs)")
subprocess.run(["jpegtran", "-arithmetic", "-outfile", os.path.join(OUT, "decode_rgb_arith.jpg"),
                os.path.join(OUT, "decode_rgb_sub2_prog0.jpg")], check=True)
for mode in ["RGB", "L"]:
    add(f"decode_rgb_arith.jpg_{mode.lower()}", "decode_rgb_arith.jpg", mode, "decode_jpeg", {},
        load("decode_rgb_arith.jpg", mode))

# A CMYK JPEG (Pillow writes Adobe-inverted samples and reads them back as "CMYK;I").
inp = save_input("decode_cmyk.jpg", Image.fromarray(odd, "RGB").convert("CMYK"), quality=80)
for mode in ["RGB", "L"]:
    add(f"decode_cmyk.jpg_{mode.lower()}", inp, mode, "decode_jpeg", {}, load(inp, mode))

with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(cases, f, indent=1)
print(f"{len(cases)} cases written to {OUT}")
