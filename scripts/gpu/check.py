#!/usr/bin/env python3
"""The CUDA check in one run (docs/gpu.md); start it through scripts/gpu/check.sh.

1. version  - `medfm --version` reports CUDA available and names the GPU;
2. features - `medfm features` on the device equals its CPU output (fp32, max abs <= 1e-3) for
              dinov2_vitb14 and sam2_b, from the same random weights (written once, passed with
              --weights: without them each device would draw its own random init);
3. train    - a short run on `medfm synth` APTOS2019 data: dinov2_vitb14 with its last 4 blocks
              trained (partial.unfreeze_cutoff 8) + the deit_base head, mixed precision on
              (with pin_memory) and off: finishes, finite losses (history.csv, metrics_results.json), and the loss
              scaler's state (the session checkpoint's `scaler`: scale, growth tracker) agrees
              with the steps it skipped (medfm's "step skipped" notices);
4. bench    - that training step, medfm vs the same model in PyTorch (the reference's modules)
              on the same device in the same run (scripts/bench/train.py step): ms/step,
              images/s, GPU memory, and model FLOP utilisation; float16 and bfloat16
              autocast, float32 with and without TF32 matmuls, medfm's fused AdamW;
5. large    - ViT-L/14 and ViT-H/14, last 4 blocks + linear head, bfloat16, batch 64 and 256,
              medfm vs PyTorch eager (scripts/bench/train.py step --configs vitl_last4,vith_last4);
6. e2e      - end to end on the GPU, medfm vs scripts/bench/ref_train_loop.py, DINOv2-B/14 last
              4 blocks, bfloat16 (scripts/bench/train.py e2e --e2e-device cuda --unfreeze 8).

Results go to OUT (default $OUT, else gpu_check_results/), three files, because the device
tool brings back at most 8: results.json, summary.md and details.tar.gz (logs/<step>.log of
every command, and the training runs' history.csv and metrics_results.json). They are
rewritten after every check (the archive after every command), so a run cut short keeps what
it did. The bulky work (random weights, data, checkpoints) is in a temporary folder, removed at
the end unless --keep-work. Needs only python3 with torch: safetensors files are read and
written here, with the standard library.

MEDFM_GPU_CHECK_DEVICE=cpu runs everything on the CPU (the device run repeats the CPU one), to
test the script without a GPU; `--quick` uses small sizes.
"""
import argparse
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOLERANCE = 1e-3
INIT_SCALE = 65536.0  # GradScaler's initial scale, in medfm (src/train/amp.rs) as in torch
# Dense float16/bfloat16 tensor-core peaks (TFLOP/s, no sparsity), by device-name substring,
# first match wins; MEDFM_GPU_PEAK_TFLOPS overrides.
PEAK_TFLOPS = [("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4)]


class Check:
    def __init__(self, args):
        self.args = args
        self.out = args.out
        # Weights, data, checkpoints (GBs): outside OUT, which keeps only the small results.
        self.work = tempfile.mkdtemp(prefix="medfm_gpu_check_")
        os.makedirs(self.out, exist_ok=True)
        # Logs and copies of small results, packed into OUT/details.tar.gz at every save.
        self.details = os.path.join(self.work, "details")
        self.logs = os.path.join(self.details, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.medfm = os.environ.get("MEDFM_BIN") or os.path.join(ROOT, "target", "release", "medfm")
        self.results = {"device": args.device, "quick": args.quick, "medfm": self.medfm,
                        "torch": torch.__version__, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "checks": {}}
        # What torch sees (a cross-check of `medfm --version`; names the GPU for the MFU peak).
        self.gpu_name = None
        if args.device != "cpu" and torch.cuda.is_available():
            self.gpu_name = torch.cuda.get_device_name(torch.device(args.device))
            self.results["torch_gpu"] = self.gpu_name

    def run(self, name, cmd, env=None):
        """Run `cmd`, writing its output (stderr merged into stdout) to logs/<name>.log and
        echoing it to this script's stdout as it comes (a run stopped by a time limit still
        shows how far the command got); return the output."""
        start = time.time()
        log_path = os.path.join(self.logs, f"{name}.log")
        lines = []
        with open(log_path, "w") as log:
            log.write(f"$ {' '.join(cmd)}\n")
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=env, bufsize=1)
            for line in proc.stdout:
                lines.append(line)
                log.write(line)
                print(f"  [{name}] {line}", end="", flush=True)
            returncode = proc.wait()
            log.write(f"\n[exit {returncode}, {time.time() - start:.1f} s]\n")
        self.pack()
        text = "".join(lines)
        if returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])}... exited with {returncode} "
                               f"(details.tar.gz: logs/{name}.log): "
                               f"{text.strip().splitlines()[-1] if text.strip() else ''}")
        return text

    def record(self, name, result):
        self.results["checks"][name] = result
        self.save()

    def save(self):
        checks = self.results["checks"].values()
        self.results["ok"] = all(c.get("ok") is not False for c in checks)
        write_atomic(os.path.join(self.out, "results.json"), json.dumps(self.results, indent=1) + "\n")
        write_atomic(os.path.join(self.out, "summary.md"), summary(self.results))
        self.pack()

    def pack(self):
        """OUT/details.tar.gz from the details folder, after every command: when a time limit
        stops the run, the logs of the commands that finished come back."""
        tmp = os.path.join(self.out, f"details.tar.gz.tmp{os.getpid()}")
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(self.details, arcname=".")
        os.replace(tmp, os.path.join(self.out, "details.tar.gz"))

    # ------------------------------------------------------------------------------ 1. version
    def version(self):
        text = self.run("version", [self.medfm, "--version"]).strip()
        names = re.findall(r"cuda:\d+: ([^;)]+)", text)
        result = {"output": text, "cuda_available": "CUDA available: yes" in text, "gpus": names}
        if self.args.device == "cpu":
            result["ok"] = None  # nothing to require without a GPU
        else:
            result["ok"] = result["cuda_available"] and bool(names)
        if names:
            self.gpu_name = names[0]
        return result

    # ----------------------------------------------------------------------------- 2. features
    def features(self):
        batch = 1 if self.args.quick else 2
        rows = []
        # SAM2.1 Hiera takes sides that are multiples of 32.
        for seed, (name, size) in enumerate([("dinov2_vitb14", 112 if self.args.quick else 224),
                                             ("sam2_b", 128 if self.args.quick else 224)]):
            keys = json.load(open(os.path.join(ROOT, "tests", "fixtures", "keys", f"{name}.json")))["keys"]
            weights = os.path.join(self.work, f"{name}_random.pth")
            torch.save(random_state_dict(keys, seed), weights)
            pixels = os.path.join(self.work, f"{name}_pixels.safetensors")
            g = torch.Generator().manual_seed(100 + seed)
            write_safetensors(pixels, {"pixels": torch.randn(batch, 3, size, size, generator=g)})
            outs = {}
            for side, device in [("cpu", "cpu"), ("device", self.args.device)]:
                outs[side] = os.path.join(self.work, f"{name}_features_{side}.safetensors")
                self.run(f"features_{name}_{side}",
                         [self.medfm, "features", "--backbone", name, "--weights", weights, "--input", pixels,
                          "--output", outs[side], "--device", device])
            ref, got = read_safetensors(outs["cpu"]), read_safetensors(outs["device"])
            row = {"backbone": name, "input": [batch, 3, size, size]}
            for t in ["pooled", "tokens"]:
                diff = (got[t] - ref[t]).abs().max().item()
                row[t] = {"shape": list(ref[t].shape), "max_abs_diff": diff,
                          "max_abs_value": ref[t].abs().max().item(),
                          "finite": bool(torch.isfinite(got[t]).all() and torch.isfinite(ref[t]).all())}
            row["ok"] = all(row[t]["finite"] and row[t]["max_abs_diff"] <= TOLERANCE for t in ["pooled", "tokens"])
            rows.append(row)
            self.record("features", {"tolerance": TOLERANCE, "rows": rows, "ok": all(r["ok"] for r in rows)})
            for f in [weights, pixels]:
                os.remove(f)  # 350 MB of random trunk weights each: not worth keeping
        return self.results["checks"]["features"]

    # -------------------------------------------------------------------------------- 3. train
    def train(self):
        q = self.args.quick
        size, n, batch, epochs = (56, 48, 8, 1) if q else (224, 384, 32, 2)
        data = os.path.join(self.work, "data")
        self.run("synth", [self.medfm, "synth", "--dataset", "APTOS2019", "--out", data, "--n", str(n)])
        rows = []
        for amp in [True, False]:
            name = "train_amp" if amp else "train_fp32"
            params = train_params(data, os.path.join(self.work, name), name, size, batch, epochs, amp,
                                  self.args.device)
            path = os.path.join(self.work, f"{name}.json")
            write_atomic(path, json.dumps(params, indent=1))
            # --overwrite: a check run again in the same work folder replaces its earlier run.
            text = self.run(name, [self.medfm, "--params_path", path, "--overwrite"])
            rows.append(train_result(text, params, amp, self.args.device))
            results = os.path.join(self.work, name, "results", name)
            for f in ["history.csv", "metrics_results.json"]:
                os.makedirs(os.path.join(self.details, name), exist_ok=True)
                shutil.copy(os.path.join(results, f), os.path.join(self.details, name, f))
            self.record("train", {"rows": rows, "ok": all(r["ok"] for r in rows)})
        return self.results["checks"]["train"]

    # -------------------------------------------------------------------------------- 4. bench
    def bench(self):
        q = self.args.quick
        size, batch, iters, warmup = (56, 2, 2, 1) if q else (224, 32, 10, 3)
        batch = self.args.bench_batch or batch
        peak = peak_tflops(self.gpu_name)
        flops = train_step_flops(size, batch)
        rows = []
        # medfm's default optimizer on a GPU steps each parameter group as one tensor (torch's
        # foreach); the last run times the per-parameter loop too, to show what that saves.
        # Then bfloat16 autocast (no loss scaling on either side), float32 with TF32 matmuls
        # (both sides), and medfm's fused AdamW kernel under bfloat16.
        variants = [("amp", "default", []), ("fp32", "default", []), ("fp32_foreach_false", "false", []),
                    ("bf16", "default", ["--amp", "--amp-dtype", "bfloat16"]),
                    ("fp32_tf32", "default", ["--tf32-matmul"]),
                    ("bf16_fused", "default", ["--amp", "--amp-dtype", "bfloat16", "--medfm-fused", "true"])]
        for label, foreach, extra in variants:
            extra = ["--amp"] if label == "amp" else extra
            name = f"bench_{label}"
            out = os.path.join(self.work, f"{name}.json")
            cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench", "train.py"), "step", "--configs", "deit_last4",
                   "--device", self.args.device, "--batch", str(batch), "--size", str(size), "--iters", str(iters),
                   "--warmup", str(warmup), "--threads", str(self.args.threads), "--json", out,
                   "--medfm-foreach", foreach, *extra]
            self.run(name, cmd, env=dict(os.environ, PYTHONWARNINGS="ignore"))
            for r in json.load(open(out)):
                for side in ["pytorch", "medfm"]:
                    seconds = r[f"{side}_ms"] / 1e3
                    r[f"{side}_images_per_s"] = round(batch / seconds, 1)
                    r[f"{side}_mfu"] = round(flops / seconds / (peak * 1e12), 4) if peak else None
                rows.append(r)
            self.record("bench", {"config": "dinov2_vitb14 last 4 blocks + deit_base head",
                                  "batch": batch, "size": size,
                                  "model_tflop_per_step": round(flops / 1e12, 3), "peak_tflops": peak,
                                  "rows": rows, "ok": True})
        return self.results["checks"]["bench"]

    # -------------------------------------------------------------------------------- 5. large
    def large(self):
        """ViT-L/14 and ViT-H/14 with their last 4 blocks trained + linear head, bfloat16
        autocast, batch 64 and 256: medfm vs PyTorch eager (scripts/bench/train.py step)."""
        q = self.args.quick
        size, batches, iters, warmup = (28, [2], 2, 1) if q else (224, [64, 256], 5, 2)
        rows = []
        for config in ["vitl_last4", "vith_last4"]:
            for batch in batches:
                name = f"large_{config}_b{batch}"
                out = os.path.join(self.work, f"{name}.json")
                cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench", "train.py"), "step", "--configs", config,
                       "--device", self.args.device, "--batch", str(batch), "--size", str(size), "--iters", str(iters),
                       "--warmup", str(warmup), "--threads", str(self.args.threads), "--json", out,
                       "--amp", "--amp-dtype", "bfloat16"]
                self.run(name, cmd, env=dict(os.environ, PYTHONWARNINGS="ignore"))
                for r in json.load(open(out)):
                    for side in ["pytorch", "medfm"]:
                        r[f"{side}_images_per_s"] = round(batch / (r[f"{side}_ms"] / 1e3), 1)
                    rows.append(r)
                self.record("large", {"rows": rows, "ok": True})
        return self.results["checks"]["large"]

    # -------------------------------------------------------------------------------- 6. e2e
    def e2e(self):
        """End to end on the GPU: the medfm binary vs scripts/bench/ref_train_loop.py, DINOv2-B/14
        with its last 4 blocks trained, bfloat16 (scripts/bench/train.py e2e)."""
        try:  # the Python loop's data pipeline and metrics; a bare GPU image has torch only
            import PIL, sklearn, torchvision  # noqa: F401
        except ImportError as e:
            return {"ok": True, "skipped": f"needs the reference packages (scripts/setup.sh --ref): {e}"}
        q = self.args.quick
        n, size = (48, 28) if q else (512, 224)
        name = "e2e_last4_bf16"
        log = self.run(name, [sys.executable, os.path.join(ROOT, "scripts", "bench", "train.py"), "e2e",
                              "--e2e-device", self.args.device, "--n", str(n), "--e2e-size", str(size),
                              "--backbone", "dinov2_vitb14", "--unfreeze", "8", "--e2e-amp", "bfloat16",
                              "--threads", str(self.args.threads)],
                       env=dict(os.environ, PYTHONWARNINGS="ignore"))
        summary = [json.loads(line) for line in log.splitlines() if line.startswith('{"images"')]
        return {"summary": summary[-1] if summary else None, "ok": bool(summary)}


def train_params(data, save_dir, name, size, batch, epochs, amp, device):
    p = json.load(open(os.path.join(ROOT, "configs", "demo.json")))
    t = {"Resize": {"apply": True, "height": size, "width": size}, "Normalize": True}
    p["dataset_params"].update({"data_location": data, "train_transforms": t, "val_transforms": t,
                                "test_transforms": t})
    for loader in ["trainloader", "valloader", "testloader"]:
        # The mixed-precision run also takes the pinned-memory upload path.
        p["dataloader_params"][loader].update({"batch_size": batch, "num_workers": 4, "pin_memory": amp})
    p["foundation_params"].update({"backbone_type": "dinov2_vitb14", "img_size": size, "pretrained": False,
                                   "freeze_backbone": True})
    p["foundation_params"]["partial"]["unfreeze_cutoff"] = 8  # blocks 8..11 (the last 4) train
    p["model_params"].update({"backbone_type": "deit_base", "pretrained": False})
    p["model_params"]["transformers_params"]["img_size"] = [size]
    p["optimization_params"]["default"]["optimizer"]["params"]["lr"] = 1e-4
    p["training_params"].update({"model_name": name, "epochs": epochs, "val_every": 1, "log_every": 1,
                                 "knn_eval": False, "use_tensorboard": False, "use_mixed_precision": amp,
                                 "save_dir": save_dir})
    p["system_params"]["use_GPU"] = device != "cpu"
    p["system_params"]["which_GPUs"] = device.partition(":")[2] or "0"
    return p


def train_result(text, params, amp, device):
    """Finite losses, and the scaler's saved state against the steps medfm says it skipped."""
    tp = params["training_params"]
    results = os.path.join(tp["save_dir"], "results", tp["model_name"])
    history = open(os.path.join(results, "history.csv")).read().splitlines()
    header = history[0].split(",")
    losses = {col: [float(line.split(",")[header.index(col)]) for line in history[1:]]
              for col in ["train_loss", "val_loss"]}
    metrics = json.load(open(os.path.join(results, "metrics_results.json")))
    state = json.loads(read_safetensors_metadata(
        os.path.join(tp["save_dir"], "checkpoints", f"{tp['model_name']}.last.safetensors"))["state"])
    skipped = [int(i) for i in re.findall(r"iteration (\d+): inf/NaN gradients; step skipped", text)]
    finite = bool(history[1:]) and all(math.isfinite(v) for vs in losses.values() for v in vs)
    row = {"mixed_precision": amp, "iterations": state["iters"], "history": losses, "test_metrics": metrics,
           "finite_losses": finite, "scaler": state.get("scaler"), "skipped_steps": len(skipped),
           "skipped_iterations": skipped}
    if amp and device != "cpu":
        s = row["scaler"]
        # Fewer than 2000 steps: the scale only backs off (x0.5 per skipped step), and the growth
        # tracker counts the good steps since the last skipped one.
        row["loss_scaling_ok"] = (state["iters"] < 2000 and s is not None
                                  and s["scale"] == INIT_SCALE * 0.5 ** len(skipped)
                                  and s["growth_tracker"] == state["iters"] - max(skipped, default=0))
    else:
        row["loss_scaling_ok"] = row["scaler"] is None  # fp32, or no CUDA: no scaler
    row["ok"] = finite and row["loss_scaling_ok"]
    return row


# ------------------------------------------------------------------------------- FLOPs


def block_flops(tokens, dim, mlp_ratio=4):
    """One pre-norm ViT block's forward multiply-adds x 2: qkv, projection, MLP, QK^T and AV."""
    return 2 * tokens * dim * dim * (3 + 1 + 2 * mlp_ratio) + 4 * tokens * tokens * dim


def train_step_flops(size, batch, dim=768, patch=14):
    """FLOPs of one training step of dinov2_vitb14 (blocks 8..11 trained) + the deit_base head:
    forward everywhere; backward (~2x forward: input and weight gradients) only where gradients
    flow, i.e. the last 4 trunk blocks and the head. Norms, softmax, GELU, the optimizer: left
    out (a few %)."""
    patches = (size // patch) ** 2
    frozen = 2 * patches * 3 * patch * patch * dim + 8 * block_flops(patches + 1, dim)
    trained = 4 * block_flops(patches + 1, dim)
    # The head: Linear+LayerNorm on the patch tokens, 12 DeiT-B blocks over them + its class
    # token, the classifier on the class token.
    head = 2 * patches * dim * dim + 12 * block_flops(patches + 1, dim) + 2 * dim * 5
    return batch * (frozen + 3 * (trained + head))


def peak_tflops(gpu_name):
    if os.environ.get("MEDFM_GPU_PEAK_TFLOPS"):
        return float(os.environ["MEDFM_GPU_PEAK_TFLOPS"])
    for key, value in PEAK_TFLOPS:
        if gpu_name and key in gpu_name:
            return value
    return None


# ----------------------------------------------------------------- safetensors, stdlib only


def write_safetensors(path, tensors):
    """float32 tensors -> a safetensors file (header JSON, 8-byte aligned, then raw data)."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        values = t.detach().to(torch.float32).contiguous().flatten().tolist()
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_header(f):
    (n,) = struct.unpack("<Q", f.read(8))
    return json.loads(f.read(n)), 8 + n


def read_safetensors(path):
    """A safetensors file of float32 tensors -> {name: tensor}."""
    with open(path, "rb") as f:
        header, start = read_header(f)
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(info["shape"])
    return out


def read_safetensors_metadata(path):
    with open(path, "rb") as f:
        return read_header(f)[0].get("__metadata__", {})


def random_state_dict(keys, seed):
    """Random tensors for a [name, shape] list: norm weights near 1, the rest ~ N(0, 1/fan_in),
    biases small, so activations stay in a normal range through the depth."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in keys:
        noise = torch.randn(shape, generator=g)
        if len(shape) == 1 and ("norm" in name or name.endswith("gamma")) and name.endswith(("weight", "gamma")):
            sd[name] = 1.0 + 0.1 * noise
        elif len(shape) == 1:
            sd[name] = 0.02 * noise
        else:
            sd[name] = noise / math.sqrt(math.prod(shape[1:]))
    return sd


def write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ summary


def verdict(ok):
    return {True: "PASS", False: "FAIL", None: "n/a"}[ok]


def na(value):
    return "n/a" if value is None else value


def summary(r):
    c = r["checks"]
    lines = [f"# medfm GPU check: {verdict(r['ok'])}", "",
             f"device `{r['device']}`{' (quick)' if r['quick'] else ''}, torch {r['torch']}, "
             f"started {r['started_utc']}", ""]
    if "version" in c:
        v = c["version"]
        lines += [f"## 1. version: {verdict(v.get('ok'))}", "", f"`{v.get('output', v.get('error'))}`", ""]
    if "features" in c:
        f = c["features"]
        lines += [f"## 2. features, device vs CPU (fp32, tolerance {TOLERANCE}): {verdict(f.get('ok'))}", ""]
        lines += ["| backbone | input | pooled max abs diff | tokens max abs diff | max abs value |", "|---|---|---|---|---|"]
        for row in f.get("rows", []):
            lines.append(f"| {row['backbone']} | {row['input']} | {row['pooled']['max_abs_diff']:.2e} | "
                         f"{row['tokens']['max_abs_diff']:.2e} | {row['tokens']['max_abs_value']:.2f} |")
        lines += [f.get("error", ""), ""]
    if "train" in c:
        t = c["train"]
        lines += [f"## 3. training, dinov2_vitb14 last 4 blocks + deit_base: {verdict(t.get('ok'))}", ""]
        lines += ["| mixed precision | iterations | train losses | finite | scaler (scale, growth tracker) | "
                  "skipped steps |", "|---|---|---|---|---|---|"]
        for row in t.get("rows", []):
            s = row["scaler"]
            lines.append(f"| {row['mixed_precision']} | {row['iterations']} | "
                         f"{', '.join(f'{v:.4f}' for v in row['history']['train_loss'])} | {row['finite_losses']} | "
                         f"{(s['scale'], s['growth_tracker']) if s else 'none'} | {row['skipped_steps']} |")
        lines += [t.get("error", ""), ""]
    if "bench" in c:
        b = c["bench"]
        lines += [f"## 4. training step, medfm vs PyTorch ({b.get('config', '')}): {verdict(b.get('ok'))}", "",
                  f"batch {b.get('batch')}, {b.get('size')} px; model FLOPs per step: {b.get('model_tflop_per_step')} "
                  f"TFLOP; peak used for MFU: {b.get('peak_tflops')} TFLOP/s (dense fp16/bf16)", ""]
        lines += ["| amp | side (medfm's foreach) | ms/step | images/s | MFU | GPU MiB (nvidia-smi per process) | "
                  "GPU MiB (device rise at start) | allocator peak MiB |", "|---|---|---|---|---|---|---|---|"]
        for row in b.get("rows", []):
            for side in ["pytorch", "medfm"]:
                mfu = row.get(f"{side}_mfu")
                label = f"medfm ({row.get('medfm_foreach', 'default')})" if side == "medfm" else side
                amp = (row.get("amp_dtype", "float16") if row["amp"] else "off") + (
                    ", tf32 matmul" if row.get("tf32_matmul") else "")
                if row.get("medfm_fused", "default") != "default" and side == "medfm":
                    label += f", fused {row['medfm_fused']}"
                lines.append(f"| {amp} | {label} | {row[f'{side}_ms']} | {row[f'{side}_images_per_s']} | "
                             f"{f'{mfu:.1%}' if mfu is not None else 'n/a'} | "
                             f"{na(row.get(f'{side}_gpu_smi_process_mib'))} | "
                             f"{na(row.get(f'{side}_gpu_device_rise_mib'))} | "
                             f"{na(row.get(f'{side}_max_memory_allocated_mib'))} |")
        lines += [b.get("error", ""), ""]
    if "large" in c:
        g = c["large"]
        lines += [f"## 5. ViT-L/14 and ViT-H/14, last 4 blocks, bfloat16: {verdict(g.get('ok'))}", "",
                  "| config | batch | PyTorch ms | medfm ms | medfm / PyTorch | images/s PyTorch vs medfm |",
                  "|---|---|---|---|---|---|"]
        for row in g.get("rows", []):
            lines.append(f"| {row['config']} | {row['batch']} | {row['pytorch_ms']} | {row['medfm_ms']} | "
                         f"{row['ratio']} | {row['pytorch_images_per_s']} vs {row['medfm_images_per_s']} |")
        lines += [g.get("error", ""), ""]
    if "e2e" in c:
        e = c["e2e"]
        lines += [f"## 6. end to end on the GPU: {verdict(e.get('ok'))}", "",
                  f"`{json.dumps(e.get('summary') or e.get('skipped') or e.get('error'))}`", ""]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "gpu_check_results"))
    ap.add_argument("--device", default=os.environ.get("MEDFM_GPU_CHECK_DEVICE", "cuda"))
    ap.add_argument("--quick", action="store_true", help="small sizes (a CPU test of the script)")
    ap.add_argument("--only", default="version,features,train,bench,large,e2e", help="comma-separated checks")
    ap.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1), help="CPU threads of the bench")
    ap.add_argument("--bench-batch", type=int, help="batch size of the step benchmark (default 32; 2 with --quick)")
    ap.add_argument("--keep-work", action="store_true", help="keep the work folder (weights, data, runs)")
    args = ap.parse_args()
    check = Check(args)
    for name in args.only.split(","):
        print(f"== {name}", flush=True)
        try:
            result = getattr(check, name)()
        except Exception as e:  # record it and go on: every check that can run, runs
            result = dict(check.results["checks"].get(name, {}), ok=False, error=f"{type(e).__name__}: {e}",
                          traceback=traceback.format_exc())
        check.record(name, result)
        print(json.dumps({k: v for k, v in result.items() if k != "traceback"})[:2000], flush=True)
    if not args.keep_work:
        shutil.rmtree(check.work, ignore_errors=True)
    print(open(os.path.join(args.out, "summary.md")).read())
    return 0 if check.results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
