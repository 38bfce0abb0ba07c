#!/usr/bin/env python3
"""Generate configs/paper/<dataset>/<backbone>_<head>.json — one params file per (dataset,
backbone, head) of the paper's experiment matrix — from ONE base file, configs/paper/base.json
(the reference repository's params.json, which its README says reproduces the paper).

Only these keys differ from the base:
  dataset_params.dataset, foundation_params.backbone_type, foundation_params.img_size,
  model_params.backbone_type (head: "none" = linear, "deit_base" = attention head),
  training_params.model_name (unique: <Family>_<backbone>_<head>_<dataset>).
The per-dataset warm-up (DDSM/APTOS2019: 5 warm-up epochs; ISIC2019/CheXpert: 1000 warm-up
iterations) is applied by medfm when a file is loaded, exactly as the reference's
update_warmup, so the files do not repeat it. Edit base.json (or the tables below) and rerun;
tests/paper_configs.rs checks that every file equals base.json plus these keys.

Usage: python3 scripts/gen_paper_configs.py [--check]
  --check  exit 1 if a generated file is missing or differs (nothing is written)
"""
import argparse
import copy
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAPER = ROOT / "configs" / "paper"
BASE = PAPER / "base.json"

DATASETS = ["APTOS2019", "DDSM", "CheXpert", "ISIC2019"]

# backbone -> (family prefix of the model name, input size). The reference ran every trunk at
# 224 px (Resize 256 -> CenterCrop/RandomResizedCrop 224 in params.json); SAM2.1's Hiera and
# VMamba take any multiple of their stride, so they stay at 224 as in the reference.
BACKBONES = {
    "vit_base_patch16": ("MAE", 224),
    "vit_large_patch16": ("MAE", 224),
    "vit_huge_patch14": ("MAE", 224),
    "dinov2_vitb14": ("DINOv2", 224),
    "dinov2_vitl14": ("DINOv2", 224),
    "aimv2-large-patch14-224": ("AIMv2", 224),
    "aimv2-huge-patch14-224": ("AIMv2", 224),
    "coca_ViT-B-32": ("CoCa", 224),
    "coca_ViT-L-14": ("CoCa", 224),
    "sam2_b": ("SAM2", 224),
    "sam2_l": ("SAM2", 224),
    "vmamba_s": ("VMamba", 224),
    "vmamba_b": ("VMamba", 224),
    "clip_vitb16": ("CLIP", 224),
}

# params.json head value -> the name used in file and model names.
HEADS = {"none": "linear", "deit_base": "deit_base"}


def generate(base):
    """Yield (relative path, params dict) for the whole matrix."""
    for dataset in DATASETS:
        for backbone, (family, img_size) in BACKBONES.items():
            for head, head_name in HEADS.items():
                p = copy.deepcopy(base)
                p["dataset_params"]["dataset"] = dataset
                p["foundation_params"]["backbone_type"] = backbone
                p["foundation_params"]["img_size"] = img_size
                p["model_params"]["backbone_type"] = head
                p["training_params"]["model_name"] = f"{family}_{backbone}_{head_name}_{dataset}"
                yield pathlib.Path(dataset) / f"{backbone}_{head_name}.json", p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="verify, do not write")
    args = ap.parse_args()
    base = json.loads(BASE.read_text())
    stale, written, names = [], 0, set()
    for rel, params in generate(base):
        name = params["training_params"]["model_name"]
        assert name not in names, f"duplicate model_name {name}"
        names.add(name)
        text = json.dumps(params, indent=2) + "\n"
        path = PAPER / rel
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written += 1
    if args.check:
        if stale:
            print("stale or missing (run scripts/gen_paper_configs.py):\n  " + "\n  ".join(stale))
            sys.exit(1)
        print(f"all {len(names)} paper configs are up to date")
    else:
        print(f"{len(names)} configs in {PAPER.relative_to(ROOT)} ({written} written or updated)")


if __name__ == "__main__":
    main()
