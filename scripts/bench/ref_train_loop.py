#!/usr/bin/env python3
"""A Python training loop doing what the reference does, for scripts/bench/train.py e2e.

For a frozen DINOv2 trunk + linear head on APTOS2019 (no augmentation, no schedule): PIL +
torchvision transforms in a torch DataLoader, the official DINOv2 module (the reference loads it
through torch.hub) in the reference's FoundationWrapper composition, AdamW with the reference's
two parameter groups, gradient clipping, validation every epoch and once more after training,
the best model on the dataset's target metric (quadratic kappa), the test of the best model, and
`metrics_results.json` with the reference's keys (its DefaultClassificationMetrics, sklearn).
The trunk runs on every image of every epoch, as in the reference.

With `foundation_params.partial.unfreeze_cutoff = k >= 0` blocks k.. of the trunk are trained
too (the reference's `partial_unfreeze`). With `system_params.use_GPU` and CUDA available it
runs on the GPU (batches copied with `non_blocking` from pinned memory, as the reference's
loaders), under `torch.autocast` in `training_params.amp_dtype` when `use_mixed_precision`
(float16 with a GradScaler, bfloat16 without).

Usage: ref_train_loop.py --params P --out DIR --head-init HEAD.safetensors [--threads T]
"""
import argparse
import copy
import csv
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import load_file
from sklearn import metrics as skm
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

HERE = os.path.dirname(os.path.abspath(__file__))
# scripts/fixtures/: the parity generators' reference builders.
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))
from gen_parity_dinov2 import official_code  # noqa: E402

MEAN, STD = (0.415, 0.221, 0.073), (0.275, 0.150, 0.081)


class Aptos(Dataset):
    def __init__(self, root, rows, idx, tf):
        self.items = [(os.path.join(root, "train_images", "train_images", rows[i][0] + ".png"), int(rows[i][1]))
                      for i in idx]
        self.tf = tf

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        with open(path, "rb") as f:
            img = Image.open(f).convert("RGB")
        return self.tf(img), torch.as_tensor(label)


def classification_metrics(truths, logits, n, prefix):
    """The reference's DefaultClassificationMetrics.get_value."""
    probs = torch.softmax(torch.cat(logits), dim=1)
    preds = probs.argmax(1).numpy().tolist()
    truths = torch.cat(truths).numpy().tolist()
    roc = probs[:, -1].numpy().tolist() if n == 2 else probs.numpy().tolist()
    out = {
        "accuracy": skm.accuracy_score(truths, preds),
        "precision": skm.precision_score(truths, preds, average="macro", zero_division=0),
        "recall": skm.recall_score(truths, preds, average="macro", zero_division=0),
        "f1": skm.f1_score(truths, preds, average="macro", zero_division=0),
        "cohen_kappa": skm.cohen_kappa_score(truths, preds, labels=list(range(n))),
        "quadratic_kappa": skm.cohen_kappa_score(truths, preds, labels=list(range(n)), weights="quadratic"),
    }
    try:
        out["roc_auc"] = skm.roc_auc_score(truths, np.asarray(roc), average="macro", multi_class="ovo")
    except ValueError:
        out["roc_auc"] = 0.5
    return {f"{prefix}_{k}": round(v, 3) for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--head-init", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p = json.load(open(args.params))
    d, tp = p["dataset_params"], p["training_params"]
    root = os.path.join(d["data_location"], "APTOS2019")
    rows = list(csv.reader(open(os.path.join(root, "train_1.csv"))))[1:]
    split = json.load(open(os.path.join(root, "val_ids.json")))
    held = split["val_split"]
    r = d["val_transforms"]["Resize"]
    tf = T.Compose([T.Resize((r["height"], r["width"])), T.ToTensor(), T.Normalize(MEAN, STD)])
    # The one augmentation train.py's --augment sets: a horizontal flip (torchvision's draw,
    # not medfm's, so the two sides flip different images).
    flip = d["train_transforms"].get("HorizontalFlip")
    train_tf = tf
    if flip and flip.get("apply", True):
        train_tf = T.Compose([T.Resize((r["height"], r["width"])), T.RandomHorizontalFlip(flip["p"]),
                              T.ToTensor(), T.Normalize(MEAN, STD)])
    dl = p["dataloader_params"]

    def loader(idx, name):
        lp = dl[name]
        tf_ = train_tf if name == "trainloader" else tf
        return DataLoader(Aptos(root, rows, idx, tf_), batch_size=lp["batch_size"], shuffle=lp["shuffle"],
                          num_workers=lp["num_workers"], drop_last=lp["drop_last"],
                          persistent_workers=lp["num_workers"] > 0, pin_memory=torch.cuda.is_available())

    train = loader(split["train_split"], "trainloader")
    val = loader(held[: len(held) // 2], "valloader")
    test = loader(held[len(held) // 2:], "testloader")

    packed = os.environ.get("MEDFM_GPU_PYTHONPATH")  # scripts/gpu/pack.sh's copy of the DINOv2 code
    if packed:
        sys.path.insert(0, packed)
        from dinov2.models import vision_transformer as vits
    else:
        vits = official_code(None)
    arch = {"dinov2_vits14": "vit_small", "dinov2_vitb14": "vit_base"}[p["foundation_params"]["backbone_type"]]
    backbone = getattr(vits, arch)(patch_size=14, img_size=518, init_values=1.0, block_chunks=0)
    backbone.load_state_dict(torch.load(p["foundation_params"]["weights"]))
    for q in backbone.parameters():
        q.requires_grad = False
    cutoff = p["foundation_params"].get("partial", {}).get("unfreeze_cutoff", -1)
    if cutoff >= 0:
        for blk in backbone.blocks[cutoff:]:
            for q in blk.parameters():
                q.requires_grad = True
    cuda = p["system_params"].get("use_GPU", True) and torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = cuda
    amp = cuda and tp.get("use_mixed_precision", False)
    amp_dtype = torch.bfloat16 if tp.get("amp_dtype") == "bfloat16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    head = load_file(args.head_init)
    fc = nn.Linear(head["model/head.fc.weight"].shape[1], head["model/head.fc.weight"].shape[0])
    with torch.no_grad():
        fc.weight.copy_(head["model/head.fc.weight"])
        fc.bias.copy_(head["model/head.fc.bias"])

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.fc = backbone, fc

        def forward(self, x):
            return self.fc(self.backbone.forward(x, is_training=True)["x_norm_clstoken"])

    model = Model().to(device)
    o = p["optimization_params"]["default"]["optimizer"]
    reg, noreg = [], []
    for name, q in model.named_parameters():
        if q.requires_grad:
            (noreg if name.endswith(".bias") or q.dim() == 1 else reg).append(q)
    opt = torch.optim.AdamW([{"params": reg}, {"params": noreg, "weight_decay": 0.0}], **o["params"])
    crit = nn.CrossEntropyLoss()
    n = 5
    state = {"best_target": 0.0, "best": copy.deepcopy(model.state_dict())}

    def evaluate(dataloader, prefix):
        model.eval()
        losses, logits, truths = [], [], []
        with torch.no_grad():
            for x, y in dataloader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp and prefix == "val"):
                    out = model(x).float()
                losses.append(crit(out, y).item())
                logits.append(out.cpu())
                truths.append(y.cpu())
        model.train()
        return classification_metrics(truths, logits, n, prefix), float(np.mean(losses))

    def validate():
        m, loss = evaluate(val, "val")
        print(m, f"val_loss {loss:.5f}", flush=True)
        if m["val_quadratic_kappa"] > state["best_target"]:
            state["best_target"] = m["val_quadratic_kappa"]
            state["best"] = copy.deepcopy(model.state_dict())

    # REF_PRINT_LOSSES=1: every step's loss (to compare with medfm's progress lines or
    # history; off when timing, as .item() waits for the step).
    print_losses = os.environ.get("REF_PRINT_LOSSES") == "1"
    model.train()
    for epoch in range(tp["epochs"]):
        for x, y in train:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            opt.zero_grad()
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                loss = crit(model(x), y)
            scaler.scale(loss).backward()
            if tp["grad_clipping"]:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), tp["grad_clipping"])
            scaler.step(opt)
            scaler.update()
            if print_losses:
                print(f"epoch {epoch + 1} loss {loss.item():.6f}", flush=True)
        validate()
    validate()  # the reference's evaluate() after training
    model.load_state_dict(state["best"])
    m, loss = evaluate(test, "test")
    m["test_loss"] = round(loss, 5)
    os.makedirs(args.out, exist_ok=True)
    json.dump(m, open(os.path.join(args.out, "metrics_results.json"), "w"))
    print(m)


if __name__ == "__main__":
    main()
