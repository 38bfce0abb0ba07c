#!/usr/bin/env python3
"""Training benchmarks, medfm vs PyTorch, side by side in one run (CPU fp32; `step` also on CUDA,
fp32 or mixed precision).

`step`: the time of one training step (forward, cross-entropy, backward, grad clipping at 1.0,
AdamW with the reference's two parameter groups) on the same model and batch shape:
  frozen - dinov2_vitb14 + linear head, frozen trunk;
  last4  - dinov2_vitb14 + linear head, blocks 8..11 trainable (partial.unfreeze_cutoff = 8);
  deit   - dinov2_vitb14 (frozen) + the deit_base attention head;
  deit_last4 - dinov2_vitb14 with blocks 8..11 trainable + the deit_base attention head;
  vitl_last4, vith_last4 - ViT-L/14 and ViT-H/14 with their last 4 blocks trainable + linear
  head (see LARGE).
PyTorch runs the reference's own modules: the official DINOv2 code (the reference loads it
through torch.hub; extracted from /work/.mirror/facebookresearch+dinov2) and the reference's
`utils/transformers/deit.py` (read from its mirror), composed as its wrappers do. Each side is a
server process (examples/bench_train_step.rs --serve; this script's `torch-worker`) that runs one
timed step per request; requests alternate between the two (and which goes first), so both see
the same machine load. Peak RSS is each server's VmHWM. medfm's frozen-trunk feature cache is
off here (same work per step).

`step --device cuda [--amp]` runs both servers on the GPU: the batch is held on the CPU and
copied to the device inside each timed step (as a training loop does), the device is
synchronised before the clock is read at both ends, and `--amp` is the reference's mixed
precision (autocast float16 + GradScaler) on both sides. GPU memory: PyTorch's own allocator
peaks (torch.cuda.max_memory_allocated / max_memory_reserved; tch exposes no such call for
medfm), and, the same way for both sides, what nvidia-smi reports per process (CUDA context +
the caching allocator's reserve, sampled after every step) or, where nvidia-smi lists no
matching pid (containers), the rise of the device's used memory when each server is started
and has run its first step (the servers are started one after the other for that).
The reference code comes from the local mirrors, or from $MEDFM_GPU_PYTHONPATH: a folder with
the official `dinov2/` package and `reftf/` (the reference's deit.py and transformers_utils.py),
as scripts/gpu/pack.sh packs it for a machine without the mirrors.

`e2e`: 3 epochs with validation, then the test of the best model, frozen trunk + linear head,
`medfm synth` APTOS2019 images without augmentation: the `medfm` binary vs
scripts/bench/ref_train_loop.py (a Python loop doing what the reference does). Both start from the
same trunk weights and head initialisation, so their metrics must match. Wall time, peak PSS of
the process tree (the Python loop's DataLoader workers included, shared pages counted once) and
peak RSS of the main process, sampled every 50 ms.

`e2e --e2e-device cuda` runs both sides on the GPU; `--unfreeze K` trains blocks K.. of the
trunk too (partial.unfreeze_cutoff, on both sides), `--e2e-amp float16|bfloat16` turns on mixed
precision on both sides. On a GPU the metrics agree to rounding only (cuDNN/cuBLAS kernels are
not bitwise reproducible across implementations).

`e2e --skip-unread-tokens` sets medfm's system_params.skip_unread_tokens and also times medfm
without it (`medfm_noskip`).

`e2e --augment` adds a random horizontal flip to the train transforms of both sides (the flips
differ: torchvision's draws against medfm's, so the metrics agree only roughly); `--views N`
sets medfm's training_params.feature_cache_views and also times medfm without it
(`medfm_noviews`).

`all` runs both and prints the table of numbers, ratios and targets (as in docs/performance.md).

Both sides use the same thread count and OMP_WAIT_POLICY=PASSIVE (medfm's binary sets it by
default; libgomp's spinning default makes both many times slower on a loaded machine).

Usage (under the heavy lock, see scripts/bench/train.sh):
  .venv/bin/python scripts/bench/train.py all [--batch 8] [--iters 5] [--n 512] [--backbone dinov2_vits14]
  .venv/bin/python scripts/bench/train.py step [--batch 8] [--iters 5] [--configs frozen,last4,deit]
      [--device cuda] [--amp [--amp-dtype bfloat16]] [--tf32-matmul] [--medfm-fused true] [--medfm-skip-unread-tokens] [--json OUT]
  .venv/bin/python scripts/bench/train.py e2e [--n 512] [--backbone dinov2_vits14] [--e2e-size 224]
      [--e2e-device cuda] [--unfreeze 8] [--e2e-amp bfloat16]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from functools import partial

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# scripts/fixtures/: the parity generators' reference builders (gen_parity_dinov2, parity_common).
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))

N_CLASSES = 5


def reference_modules():
    """The official DINOv2 `vision_transformer` module and the reference's `deit` module."""
    packed = os.environ.get("MEDFM_GPU_PYTHONPATH")
    if packed:
        sys.path.insert(0, packed)
        os.environ.setdefault("XFORMERS_DISABLED", "1")
        with numpy_stand_in():
            from dinov2.models import vision_transformer as vits
    else:
        from gen_parity_dinov2 import official_code
        from parity_common import reference_module_dir

        vits = official_code(None)
        reference_module_dir(["utils/transformers/deit.py", "utils/transformers/transformers_utils.py"])
    import reftf.deit as deit

    return vits, deit


class numpy_stand_in:
    """The official DINOv2 code imports numpy only for `np.linspace` of its drop-path rates
    (all 0 here). Where numpy is not installed (a bare GPU image), a module with just that
    function stands in while the code is imported, and is removed from sys.modules after."""

    def __enter__(self):
        try:
            import numpy  # noqa: F401
            self.active = False
        except ImportError:
            import types
            np = types.ModuleType("numpy")
            np.linspace = lambda start, stop, num: torch.linspace(start, stop, num, dtype=torch.float64)
            sys.modules["numpy"] = np
            self.active = True

    def __exit__(self, *exc):
        if self.active:
            del sys.modules["numpy"]


def dinov2(vits, arch):
    return getattr(vits, arch)(patch_size=14, img_size=518, init_values=1.0, block_chunks=0)


class LinearModel(nn.Module):
    """The reference's FoundationWrapper Classifier for DINOv2: fc(x_norm_clstoken)."""

    def __init__(self, backbone, dim):
        super().__init__()
        self.backbone, self.fc = backbone, nn.Linear(dim, N_CLASSES)

    def forward(self, x):
        return self.fc(self.backbone.forward(x, is_training=True)["x_norm_clstoken"])


class DeitHeadModel(nn.Module):
    """The reference's Ymodel_DINO: frozen DINOv2 tokens -> Linear+LayerNorm -> DeiT-B -> fc."""

    def __init__(self, backbone, deit):
        super().__init__()
        self.foundation = backbone
        self.linear_projector = nn.Sequential(nn.Linear(768, 768), nn.LayerNorm(768))
        main = deit.VisionTransformer(img_size=[224], patch_size=16, embed_dim=768, depth=12, num_heads=12,
                                      mlp_ratio=4, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                                      num_classes=0)
        main.patch_embed = nn.Identity()
        self.main, self.fc = main, nn.Linear(768, N_CLASSES)

    def forward(self, x):
        tokens = self.foundation.forward(x, is_training=True)["x_prenorm"][:, 1:]
        return self.fc(self.main(self.linear_projector(tokens)))


def param_groups(model):
    reg, noreg = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (noreg if name.endswith(".bias") or p.dim() == 1 else reg).append(p)
    return [{"params": reg}, {"params": noreg, "weight_decay": 0.0}]


# The large-model configs (`step --configs vitl_last4,vith_last4`): last 4 blocks trained +
# linear head. medfm runs dinov2_vitl14 and MAE's vit_huge_patch14 (ViT-H/14, 32 blocks of
# 1280); PyTorch the official DINOv2 code at the same sizes (its ViT-H/14 is DINOv2's
# DinoVisionTransformer with those sizes: the same matmuls and attention as MAE's ViT-H/14,
# LayerScale aside).
LARGE = {"vitl_last4": ("dinov2_vitl14", 1024, 24), "vith_last4": ("vit_huge_patch14", 1280, 32)}


def torch_backbone(config, vits):
    if config == "vitl_last4":
        return dinov2(vits, "vit_large")
    if config == "vith_last4":
        return vits.DinoVisionTransformer(img_size=518, patch_size=14, embed_dim=1280, depth=32, num_heads=16,
                                          mlp_ratio=4, block_fn=partial(vits.Block, attn_class=vits.MemEffAttention),
                                          init_values=1.0, block_chunks=0)
    return dinov2(vits, "vit_base")


def torch_model(config, vits, deit):
    backbone = torch_backbone(config, vits)
    for p in backbone.parameters():
        p.requires_grad = False
    if config in ("last4", "deit_last4") or config in LARGE:
        for blk in backbone.blocks[-4:]:
            for p in blk.parameters():
                p.requires_grad = True
    dim = LARGE[config][1] if config in LARGE else 768
    model = DeitHeadModel(backbone, deit) if config.startswith("deit") else LinearModel(backbone, dim)
    model.train()
    if config in ("frozen", "deit"):
        backbone.eval()
    return model


def rust_args(config):
    if config in LARGE:
        backbone, _, depth = LARGE[config]
        return ["--backbone", backbone, "--head", "none", "--unfreeze", str(depth - 4)]
    head = "deit_base" if config.startswith("deit") else "none"
    unfreeze = "8" if config in ("last4", "deit_last4") else "-1"
    return ["--backbone", "dinov2_vitb14", "--head", head, "--unfreeze", unfreeze]


def torch_worker(args):
    """PyTorch's side of `step`, in its own process (so its peak memory is its own): the same
    line protocol as examples/bench_train_step.rs --serve. At the end of its input it prints
    its allocator's peaks on CUDA as one JSON line. The step is the reference trainer's
    (defaults/trainer.py), mixed precision included."""
    warnings.filterwarnings("ignore")
    vits, deit = reference_modules()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda  # as the reference's get_device_type (and medfm)
    amp = args.amp and cuda
    # bfloat16 autocast needs no loss scaling (torch's bf16 recipes run without GradScaler).
    amp_dtype = torch.bfloat16 if args.amp_dtype == "bfloat16" else torch.float16
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = args.tf32_matmul
    model = torch_model(args.config, vits, deit).to(device)
    opt = torch.optim.AdamW(param_groups(model), lr=1e-3, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.arange(args.batch) % N_CLASSES
    crit = nn.CrossEntropyLoss()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"ready {trainable}", flush=True)
    for _ in sys.stdin:
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        opt.zero_grad()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            loss = crit(model(x.to(device)), y.to(device))
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        if cuda:
            torch.cuda.synchronize(device)
        print(f"{(time.perf_counter() - start) * 1e3:.3f}", flush=True)
    if cuda:
        print(json.dumps({"max_memory_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20,
                          "max_memory_reserved_mib": torch.cuda.max_memory_reserved(device) / 2**20}), flush=True)


class Server:
    """A process answering one timed training step per line read."""

    def __init__(self, cmd, env):
        self.cmd = cmd
        self.notes = []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        while True:
            line = self.proc.stdout.readline()
            if line.startswith("ready"):
                self.ready = line.split()[1:]
                return
            if not line and self.proc.poll() is not None:
                raise SystemExit(f"{cmd} exited with {self.proc.returncode}")

    def step(self):
        """The step's time in ms; other lines printed meanwhile (medfm's notices, e.g. of a
        step skipped by the loss scaler) are kept in `notes`."""
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"{self.cmd} died (exit {self.proc.wait()})")
            try:
                return float(line)
            except ValueError:
                self.notes.append(line.strip())

    def close(self):
        """Peak resident memory (VmHWM, MiB), read before the process exits, and the JSON line
        the server prints at the end of its input (its allocator's peaks), if any."""
        hwm = status_kib(self.proc.pid, "VmHWM") / 1024
        self.proc.stdin.close()
        tail = self.proc.stdout.read().strip().splitlines()
        self.proc.wait()
        return hwm, json.loads(tail[-1]) if tail and tail[-1].startswith("{") else {}


def status_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def nvidia_smi(*query):
    """Rows of an nvidia-smi CSV query (no header, no units), or None without nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]


class GpuMemory:
    """GPU memory of the two servers as nvidia-smi sees it (the same method for both sides)."""

    def __init__(self, index):
        self.index = str(index)
        self.per_pid = {}

    def device_used_mib(self):
        rows = nvidia_smi("--query-gpu=memory.used", "-i", self.index)
        return float(rows[0][0]) if rows else None

    def sample(self, pids):
        """Per-process used memory of `pids`, keeping each one's maximum."""
        for row in nvidia_smi("--query-compute-apps=pid,used_memory") or []:
            if len(row) == 2 and row[0].isdigit() and int(row[0]) in pids and row[1].replace(".", "").isdigit():
                self.per_pid[int(row[0])] = max(self.per_pid.get(int(row[0]), 0.0), float(row[1]))


def started_with_first_step(cmd, env, gpu):
    """Start a server and run its first step; on CUDA also the rise of the device's used
    memory over that (the server's context + allocator reserve, whatever the pid namespace)."""
    before = gpu.device_used_mib() if gpu else None
    server = Server(cmd, env)
    server.step()
    after = gpu.device_used_mib() if gpu else None
    server.device_rise_mib = after - before if before is not None and after is not None else None
    return server


def bench_step(args):
    exe = os.environ.get("MEDFM_BENCH_BIN") or os.path.join(ROOT, "target", "release", "examples", "bench_train_step")
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(args.threads))
    cuda = args.device.startswith("cuda")
    gpu = GpuMemory(args.device.partition(":")[2] or 0) if cuda else None
    results = []
    for config in args.configs.split(","):
        shape = ["--batch", str(args.batch), "--size", str(args.size), "--threads", str(args.threads),
                 "--device", args.device, *(["--amp"] if args.amp else []), "--amp-dtype", args.amp_dtype,
                 *(["--tf32-matmul"] if args.tf32_matmul else [])]
        # One after the other, each with a first (untimed) step, so the device's memory rise
        # belongs to one server.
        foreach = [] if args.medfm_foreach == "default" else ["--foreach", args.medfm_foreach]
        if args.medfm_fused != "default":
            foreach += ["--fused", args.medfm_fused]
        if getattr(args, "medfm_skip_unread_tokens", False):
            foreach += ["--skip-unread-tokens"]
        medfm = started_with_first_step([exe, *rust_args(config), "--classes", str(N_CLASSES), *shape, *foreach,
                                         "--serve"], env, gpu)
        torch_side = started_with_first_step(
            [sys.executable, os.path.abspath(__file__), "torch-worker", "--config", config, *shape], env, gpu)
        pids = {medfm.proc.pid, torch_side.proc.pid}
        t_torch, t_rust = [], []
        for i in range(args.warmup + args.iters):
            # Alternate which side goes first so slow drifts in machine load hit both alike.
            if i % 2:
                b, a = medfm.step(), torch_side.step()
            else:
                a, b = torch_side.step(), medfm.step()
            if gpu:
                gpu.sample(pids)
            if i >= args.warmup:
                t_torch.append(a)
                t_rust.append(b)
        row = {
            "config": config, "batch": args.batch, "size": args.size, "threads": args.threads,
            "device": args.device, "amp": args.amp, "amp_dtype": args.amp_dtype, "tf32_matmul": args.tf32_matmul,
            "medfm_foreach": args.medfm_foreach, "medfm_fused": args.medfm_fused,
            "trainable_params": int(torch_side.ready[0]),
            "pytorch_ms": round(statistics.median(t_torch), 1), "medfm_ms": round(statistics.median(t_rust), 1),
            "ratio": round(statistics.median(t_rust) / statistics.median(t_torch), 3),
            # Robust to load changes between steps: the ratio within each back-to-back pair, and
            # the ratio of the fastest steps (the least disturbed ones).
            "ratio_pairs": round(statistics.median(b / a for a, b in zip(t_torch, t_rust)), 3),
            "ratio_min": round(min(t_rust) / min(t_torch), 3),
            "pytorch_all": [round(t, 1) for t in t_torch], "medfm_all": [round(t, 1) for t in t_rust],
        }
        for name, server in [("pytorch", torch_side), ("medfm", medfm)]:
            pid = server.proc.pid
            hwm, stats = server.close()
            row[f"{name}_peak_rss_mib"] = round(hwm)
            if server.notes:
                row[f"{name}_notes"] = server.notes
            if gpu:
                row[f"{name}_gpu_smi_process_mib"] = gpu.per_pid.get(pid)
                row[f"{name}_gpu_device_rise_mib"] = server.device_rise_mib
                row.update({f"{name}_{k}": round(v) for k, v in stats.items()})
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


# ----------------------------------------------------------------------------------- e2e


def tree_pss_kib(pid):
    """PSS of `pid` and its descendants (shared pages counted once across the tree)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def measured(cmd, env):
    """Run `cmd`; return (wall seconds, peak PSS of its process tree in MiB, peak RSS (VmHWM)
    of its main process in MiB), sampled every 50 ms."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    pss = hwm = 0
    out = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout))
    reader.start()
    while proc.poll() is None:
        pss = max(pss, tree_pss_kib(proc.pid))
        try:
            hwm = max(hwm, status_kib(proc.pid, "VmHWM"))
        except OSError:
            pass
        time.sleep(0.05)
    reader.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stdout.write("".join(out[-30:]))
        raise SystemExit(f"{cmd[0]} failed with {proc.returncode}")
    return wall, pss / 1024, hwm / 1024


def bench_e2e(args):
    work = tempfile.mkdtemp(prefix="medfm_e2e_")
    medfm = os.environ.get("MEDFM_BIN") or os.path.join(ROOT, "target", "release", "medfm")
    data = os.path.join(work, "data")
    subprocess.run([medfm, "synth", "--dataset", "APTOS2019", "--out", data, "--n", str(args.n)], check=True)

    # Shared initial state: random official-layout trunk weights and the linear head's init.
    vits, _ = reference_modules()
    torch.manual_seed(1)
    arch = {"dinov2_vits14": ("vit_small", 384), "dinov2_vitb14": ("vit_base", 768)}[args.backbone]
    trunk = dinov2(vits, arch[0])
    weights = os.path.join(work, f"{args.backbone}_random.pth")
    torch.save(trunk.state_dict(), weights)
    fc = nn.Linear(arch[1], N_CLASSES)
    from safetensors.torch import save_file
    head = os.path.join(work, "head_init.best.safetensors")
    save_file({"model/head.fc.weight": fc.weight.detach().contiguous(), "model/head.fc.bias": fc.bias.detach().contiguous()},
              head, metadata={"format": "medfm-checkpoint-v1", "kind": "model", "state": "{}"})

    base = json.load(open(os.path.join(ROOT, "configs", "demo.json")))
    t = {"Resize": {"apply": True, "height": args.e2e_size, "width": args.e2e_size}, "Normalize": True}
    p = base
    train_t = dict(t)
    if args.augment:
        # A random train transform: no train features can be cached across epochs, unless
        # medfm keeps `--views` augmented views of each image (training_params.feature_cache_views).
        train_t["HorizontalFlip"] = {"apply": True, "p": 0.5}
    p["dataset_params"].update({"data_location": data, "train_transforms": train_t, "val_transforms": t,
                                "test_transforms": t})
    for name in ["trainloader", "valloader", "testloader"]:
        p["dataloader_params"][name].update({"batch_size": 32, "num_workers": args.threads, "shuffle": False,
                                             "drop_last": name == "trainloader"})
    p["foundation_params"].update({"backbone_type": args.backbone, "img_size": args.e2e_size, "pretrained": True,
                                   "weights": weights})
    p["model_params"]["transformers_params"]["img_size"] = [args.e2e_size]
    p["optimization_params"]["default"]["scheduler"]["type"] = []
    if args.lr is not None:
        # Both sides read it from params.json. The demo's 1e-2 suits a linear head; training trunk
        # blocks at it makes the loss jump and amplifies float rounding until the two sides'
        # metrics part.
        p["optimization_params"]["default"]["optimizer"]["params"]["lr"] = args.lr
    p["training_params"].update({"model_name": "e2e", "epochs": args.epochs, "val_every": 1, "knn_eval": False,
                                 "use_tensorboard": False, "save_dir": os.path.join(work, "medfm")})
    if args.views:
        p["training_params"]["feature_cache_views"] = args.views
    if args.skip_unread_tokens:
        p["system_params"]["skip_unread_tokens"] = True
    cuda = args.e2e_device.startswith("cuda")
    p["system_params"]["use_GPU"] = cuda
    if cuda and ":" in args.e2e_device:
        p["system_params"]["which_GPUs"] = args.e2e_device.partition(":")[2]
    if args.unfreeze >= 0:
        p["foundation_params"]["freeze_backbone"] = True
        p["foundation_params"]["partial"]["unfreeze_cutoff"] = args.unfreeze
    p["training_params"]["use_mixed_precision"] = args.e2e_amp != "off"
    if args.e2e_amp != "off":
        p["training_params"]["amp_dtype"] = args.e2e_amp
    p["transfer_learning_params"] = {"use_pretrained": True, "pretrained_model_name": "head_init",
                                     "pretrained_path": work}
    params = os.path.join(work, "params.json")
    json.dump(p, open(params, "w"), indent=1)
    # The same run with medfm's feature cache off (the trunk, or its frozen prefix, runs on
    # every image of every epoch, as in the Python loop): what the cache itself gives.
    params_nocache = os.path.join(work, "params_nocache.json")
    nocache_tp = {k: v for k, v in p["training_params"].items() if k != "feature_cache_views"}
    json.dump({**p, "training_params": {**nocache_tp, "feature_cache": False}}, open(params_nocache, "w"),
              indent=1)
    # The same run without feature_cache_views (cache on): what the cached views give.
    params_noviews = os.path.join(work, "params_noviews.json")
    json.dump({**p, "training_params": nocache_tp}, open(params_noviews, "w"), indent=1)
    # The same run computing every token of the last block: what skip_unread_tokens gives.
    params_noskip = os.path.join(work, "params_noskip.json")
    json.dump({**p, "system_params": {k: v for k, v in p["system_params"].items() if k != "skip_unread_tokens"}},
              open(params_noskip, "w"), indent=1)
    # The split file (val_ids.json), as both implementations reuse it; not timed.
    subprocess.run([medfm, "inspect", "--params_path", params], check=True, stdout=subprocess.DEVNULL)

    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(args.threads))
    rows = []
    for rep in range(args.repeats):
        # ABBA order, so a drift in machine load hits both sides alike.
        order = (["medfm", "python"] + (["medfm_nocache"] if args.cache_off_too else [])
                 + (["medfm_noviews"] if args.views else [])
                 + (["medfm_noskip"] if args.skip_unread_tokens else []))
        for impl in order if rep % 2 == 0 else order[::-1]:
            if impl.startswith("medfm"):
                # --overwrite: each repeat replaces the previous repeat's run.
                which = {"medfm": params, "medfm_nocache": params_nocache, "medfm_noviews": params_noviews,
                         "medfm_noskip": params_noskip}[impl]
                cmd = [medfm, "--params_path", which, "--overwrite"]
                results = os.path.join(work, "medfm", "results", "e2e", "metrics_results.json")
            else:
                out_dir = os.path.join(work, "python")
                cmd = [sys.executable, os.path.join(HERE, "ref_train_loop.py"), "--params", params, "--out", out_dir,
                       "--head-init", head, "--threads", str(args.threads)]
                results = os.path.join(out_dir, "metrics_results.json")
            wall, pss, hwm = measured(cmd, env)
            metrics = json.load(open(results))
            row = {"impl": impl, "rep": rep, "wall_s": round(wall, 1), "peak_pss_mib": round(pss),
                   "peak_rss_mib": round(hwm), "metrics": metrics}
            print(json.dumps(row), flush=True)
            rows.append(row)
    by = {impl: [r for r in rows if r["impl"] == impl]
          for impl in ["medfm", "python", "medfm_nocache", "medfm_noviews", "medfm_noskip"]}
    summary = {
        "images": args.n, "backbone": args.backbone, "size": args.e2e_size, "threads": args.threads,
        "device": args.e2e_device, "unfreeze": args.unfreeze, "amp": args.e2e_amp,
        "augment": args.augment, "views": args.views,
        "medfm_wall_s": statistics.median(r["wall_s"] for r in by["medfm"]),
        "python_wall_s": statistics.median(r["wall_s"] for r in by["python"]),
        "medfm_peak_pss_mib": max(r["peak_pss_mib"] for r in by["medfm"]),
        "python_peak_pss_mib": max(r["peak_pss_mib"] for r in by["python"]),
        "medfm_peak_rss_mib": max(r["peak_rss_mib"] for r in by["medfm"]),
        "python_peak_rss_mib": max(r["peak_rss_mib"] for r in by["python"]),
        "metrics_equal": all(r["metrics"] == by["python"][0]["metrics"] for r in by["medfm"] + by["python"]),
        "epochs": args.epochs,
    }
    if by["medfm_nocache"]:
        summary["medfm_nocache_wall_s"] = statistics.median(r["wall_s"] for r in by["medfm_nocache"])
        summary["nocache_metrics_equal"] = all(r["metrics"] == by["python"][0]["metrics"] for r in by["medfm_nocache"])
    if by["medfm_noskip"]:
        summary["medfm_noskip_wall_s"] = statistics.median(r["wall_s"] for r in by["medfm_noskip"])
    if by["medfm_noviews"]:
        summary["medfm_noviews_wall_s"] = statistics.median(r["wall_s"] for r in by["medfm_noviews"])
    summary["speedup"] = round(summary["python_wall_s"] / summary["medfm_wall_s"], 2)
    print(json.dumps(summary), flush=True)
    return summary


def report(steps, e2e):
    """The measured table (markdown, as in docs/performance.md) with the targets."""
    load = open("/proc/loadavg").read().split()[:3]
    print(f"\nload average at the end: {' '.join(load)} (nproc {os.cpu_count()})")
    print("| benchmark | PyTorch | medfm | medfm / PyTorch | target |")
    print("|---|---|---|---|---|")
    for r in steps:
        where = f"{r['device']}{', amp' if r['amp'] else ''}"
        print(f"| step `{r['config']}` ({where}, batch {r['batch']}, {r['size']} px), median ms | {r['pytorch_ms']} | "
              f"{r['medfm_ms']} | {r['ratio']} (pairs {r['ratio_pairs']}, fastest {r['ratio_min']}) | <= 1.05 |")
        print(f"| step `{r['config']}` peak RSS, MiB | {r['pytorch_peak_rss_mib']} | {r['medfm_peak_rss_mib']} | "
              f"{r['medfm_peak_rss_mib'] / r['pytorch_peak_rss_mib']:.2f} | <= 1 |")
        for key, what in [("gpu_smi_process_mib", "GPU memory per process (nvidia-smi)"),
                          ("gpu_device_rise_mib", "GPU memory, device rise at start")]:
            if r.get(f"pytorch_{key}") and r.get(f"medfm_{key}"):
                print(f"| step `{r['config']}` {what}, MiB | {r[f'pytorch_{key}']:.0f} | {r[f'medfm_{key}']:.0f} | "
                      f"{r[f'medfm_{key}'] / r[f'pytorch_{key}']:.2f} | <= 1 |")
    if e2e:
        print(f"| e2e {e2e['images']} images, {e2e['backbone']}, wall s | {e2e['python_wall_s']} | "
              f"{e2e['medfm_wall_s']} | {e2e['medfm_wall_s'] / e2e['python_wall_s']:.3f} "
              f"(speed-up {e2e['speedup']}x) | speed-up >= 3 |")
        print(f"| e2e peak PSS (process tree), MiB | {e2e['python_peak_pss_mib']} | {e2e['medfm_peak_pss_mib']} | "
              f"{e2e['medfm_peak_pss_mib'] / e2e['python_peak_pss_mib']:.2f} | <= 1 |")
        print(f"| e2e peak RSS (main process), MiB | {e2e['python_peak_rss_mib']} | {e2e['medfm_peak_rss_mib']} | "
              f"{e2e['medfm_peak_rss_mib'] / e2e['python_peak_rss_mib']:.2f} | <= 1 |")
        print(f"| e2e test metrics equal | | | {e2e['metrics_equal']} | true |")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    parsers = {name: sub.add_parser(name) for name in ["all", "step", "e2e", "torch-worker"]}
    for name in ["all", "step", "torch-worker"]:
        p = parsers[name]
        p.add_argument("--batch", type=int, default=8)
        p.add_argument("--size", type=int, default=224)
    for name in ["step", "torch-worker"]:
        p = parsers[name]
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
        p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only; ignored on the CPU)")
        p.add_argument("--amp-dtype", default="float16", choices=["float16", "bfloat16"],
                       help="autocast dtype with --amp (bfloat16: no loss scaling on either side)")
        p.add_argument("--tf32-matmul", action="store_true", help="TF32 float32 matmuls on both sides (CUDA)")
    parsers["step"].add_argument("--json", help="also write the rows to this JSON file")
    parsers["step"].add_argument("--medfm-fused", default="default", choices=["default", "true", "false"],
                                 help="medfm's AdamW `fused` (ATen's fused kernel); PyTorch keeps its default")
    parsers["step"].add_argument("--medfm-skip-unread-tokens", action="store_true",
                                 help="medfm's system_params.skip_unread_tokens (the last block computes the "
                                      "class token only; linear head); PyTorch computes every token")
    parsers["step"].add_argument("--medfm-foreach", default="default", choices=["default", "true", "false"],
                                 help="medfm's optimizer implementation (default: multi-tensor on a GPU, as "
                                      "torch's foreach; PyTorch keeps its default)")
    parsers["all"].set_defaults(device="cpu", amp=False, amp_dtype="float16", tf32_matmul=False,
                                medfm_fused="default", medfm_foreach="default")
    for name in ["all", "step"]:
        p = parsers[name]
        p.add_argument("--configs", default="frozen,last4,deit")
        p.add_argument("--iters", type=int, default=5)
        p.add_argument("--warmup", type=int, default=1)
    for name in ["all", "e2e"]:
        p = parsers[name]
        p.add_argument("--n", type=int, default=512)
        p.add_argument("--backbone", default="dinov2_vits14", choices=["dinov2_vits14", "dinov2_vitb14"])
        p.add_argument("--e2e-size", type=int, default=224)
        p.add_argument("--repeats", type=int, default=1)
        p.add_argument("--e2e-device", default="cpu", help="cpu, cuda or cuda:N (both sides)")
        p.add_argument("--unfreeze", type=int, default=-1,
                       help="partial.unfreeze_cutoff: train blocks K.. of the trunk too (-1: frozen trunk)")
        p.add_argument("--epochs", type=int, default=3)
        p.add_argument("--lr", type=float, default=None, help="optimizer lr (default: configs/demo.json's)")
        p.add_argument("--cache-off-too", action="store_true",
                       help="also time medfm with training_params.feature_cache false")
        p.add_argument("--e2e-amp", default="off", choices=["off", "float16", "bfloat16"],
                       help="mixed precision of both sides (CUDA)")
        p.add_argument("--augment", action="store_true",
                       help="a random horizontal flip in the train transforms of both sides")
        p.add_argument("--skip-unread-tokens", action="store_true",
                       help="medfm's system_params.skip_unread_tokens; medfm also runs without it (medfm_noskip)")
        p.add_argument("--views", type=int, default=0,
                       help="medfm's training_params.feature_cache_views (0: absent); medfm also runs "
                            "without it (medfm_noviews)")
    parsers["torch-worker"].add_argument("--config", required=True)
    for p in parsers.values():
        p.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.what == "torch-worker":
        torch_worker(args)
    elif args.what == "step":
        steps = bench_step(args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(steps, f, indent=1)
        report(steps, None)
    elif args.what == "e2e":
        report([], bench_e2e(args))
    else:
        steps = bench_step(args)
        report(steps, bench_e2e(args))


if __name__ == "__main__":
    main()
