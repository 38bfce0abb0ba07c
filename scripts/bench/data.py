#!/usr/bin/env python3
"""The Python side of scripts/bench/data.sh: the reference's input pipeline (PIL loading as
`pil_loader`, the leading Resize, then the params' transforms built as the reference's
`BaseSet.get_trans_list` builds them, torchvision DataLoader with the same worker count) over
the same images medfm's loader reads, timed per epoch.

Usage: data.py PARAMS.json ITEMS.tsv SPLIT WORKERS EPOCHS
Prints one line per epoch: "epoch K: N images in S s = R images/s".
"""
import json
import os
import random
import sys
import time

import torch
from PIL import Image, ImageFilter
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

MEAN_STD = {
    "APTOS2019": ((0.415, 0.221, 0.073), (0.275, 0.150, 0.081)),
    "ISIC2019": ((0.66776717, 0.52960888, 0.52434725), (0.22381877, 0.20363036, 0.21538623)),
    "CheXpert": ((0.503,), (0.292,)),
    "DDSM": ((0.286,), (0.267,)),
}
CHANNELS = {"APTOS2019": 3, "ISIC2019": 3, "CheXpert": 1, "DDSM": 1}


class RandomGaussianBlur:
    """The reference's utils._utils.RandomGaussianBlur (from DINO)."""

    def __init__(self, p=0.5, radius_min=0.1, radius_max=2.0):
        self.prob, self.radius_min, self.radius_max = p, radius_min, radius_max

    def __call__(self, img):
        if random.random() > self.prob:
            return img
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.radius_min, self.radius_max)))


def rand_apply(t, p):
    return T.RandomApply(torch.nn.ModuleList([t]), p)


def trans_list(d, mean, std):
    """The reference's get_trans_list, minus the Resize (run first, as it disentangles it)."""
    on = lambda k: k in d and d[k]["apply"]
    out = []
    if on("CenterCrop"):
        out.append(T.CenterCrop((d["CenterCrop"]["height"], d["CenterCrop"]["width"])))
    if on("RandomCrop"):
        c = d["RandomCrop"]
        out.append(T.RandomCrop((c["height"], c["width"]), padding=c["padding"] if c["padding"] > 0 else None))
    if on("RandomResizedCrop") and not on("MultiCrop"):
        r = d["RandomResizedCrop"]
        out.append(T.RandomResizedCrop(size=r["size"], scale=r["scale"], interpolation=T.InterpolationMode.BILINEAR))
    if on("VerticalFlip"):
        out.append(T.RandomVerticalFlip(p=d["VerticalFlip"]["p"]))
    if on("HorizontalFlip"):
        out.append(T.RandomHorizontalFlip(p=d["HorizontalFlip"]["p"]))
    if on("RandomRotation"):
        out.append(rand_apply(T.RandomRotation(degrees=d["RandomRotation"]["angle"]), d["RandomRotation"]["p"]))
    if on("ColorJitter"):
        c = d["ColorJitter"]
        out.append(rand_apply(T.ColorJitter(c["brightness"], c["contrast"], c["saturation"], c["hue"]), c["p"]))
    if on("RandomGrayscale"):
        out.append(T.RandomGrayscale(p=d["RandomGrayscale"]["p"]))
    if on("RandomGaussianBlur"):
        b = d["RandomGaussianBlur"]
        out.append(RandomGaussianBlur(b["p"], b["radius_min"], b["radius_max"]))
    if on("RandomAffine"):
        a = d["RandomAffine"]
        out.append(rand_apply(T.RandomAffine(a["degrees"], a["translate"], a["scale"], a["shear"]), a["p"]))
    if on("RandomPerspective"):
        out.append(T.RandomPerspective(d["RandomPerspective"]["distortion_scale"], p=d["RandomPerspective"]["p"]))
    if on("RandomSolarize"):
        out.append(T.RandomSolarize(threshold=d["RandomSolarize"]["threshold"], p=d["RandomSolarize"]["p"]))
    out.append(T.ToTensor())
    if d.get("Normalize"):
        out.append(T.Normalize(mean=mean, std=std))
    if on("RandomErasing"):
        e = d["RandomErasing"]
        out.append(T.RandomErasing(scale=e["scale"], ratio=e["ratio"], value=e["value"], p=e["p"]))
    return T.Compose(out)


class ItemSet(Dataset):
    """BaseSet.__getitem__: the .png-beside check, pil_loader, resizing, transform."""

    def __init__(self, items, channels, resizing, transform):
        self.items, self.channels, self.resizing, self.transform = items, channels, resizing, transform

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        path, label = self.items[idx]
        png = ".".join(path.split(".")[:-1]) + ".png"
        if os.path.exists(png):
            path = png
        with open(path, "rb") as f:
            img = Image.open(f)
            img = img.convert("RGB") if self.channels == 3 else img.convert("L")
        if self.resizing is not None:
            img = self.resizing(img)
        return self.transform(img), torch.as_tensor(label)


def main():
    params_path, items_path, split, workers, epochs = sys.argv[1:6]
    params = json.load(open(params_path))
    name = params["dataset_params"]["dataset"]
    tdict = params["dataset_params"][f"{split}_transforms"]
    loader_params = dict(params["dataloader_params"]["trainloader" if split == "train" else "valloader"])
    loader_params["num_workers"] = int(workers)
    loader_params["pin_memory"] = False
    items = []
    for line in open(items_path):
        path, label = line.rstrip("\n").split("\t")
        items.append((path, int(label) if "," not in label else [float(v) for v in label.split(",")]))
    resizing = T.Resize((tdict["Resize"]["height"], tdict["Resize"]["width"])) if tdict.get("Resize", {}).get("apply") else None
    mean, std = MEAN_STD[name]
    ds = ItemSet(items, CHANNELS[name], resizing, trans_list(tdict, mean, std))
    if loader_params["num_workers"] == 0:
        loader_params.pop("prefetch_factor", None)
        loader_params["persistent_workers"] = False
    loader = DataLoader(ds, **loader_params)
    torch.set_num_threads(1)
    for epoch in range(int(epochs)):
        start = time.perf_counter()
        n = 0
        for images, _ in loader:
            n += images.shape[0]
        secs = time.perf_counter() - start
        print(f"epoch {epoch}: {n} images in {secs:.2f} s = {n / secs:.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
