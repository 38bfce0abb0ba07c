#!/usr/bin/env python
"""Parity fixtures for medfm's optimisers and learning-rate schedules, produced by torch.

Writes tests/fixtures/optim/optimizers.json and tests/fixtures/optim/schedules.json.

Optimizers: two parameter groups as the reference builds them (weights with weight decay;
biases and 1-D parameters without), fixed gradients per step, the parameters after every step.
Schedules: the reference's scheduler set-up (`init_scheduler` + `MixedLRScheduler`) on torch's
schedulers, recording each group's lr (and beta1 / momentum) after construction and after every
iteration. The reference's own `LinearWarmup` and LARS wrapper (torchlars) do not run on
torch 2.11, so they are re-expressed here from their documented behaviour.

Run: .venv/bin/python scripts/gen_optim_fixtures.py
"""
import json
import math
import os
import warnings

import torch
from torch import optim
from torch.optim.lr_scheduler import LRScheduler

warnings.filterwarnings("ignore", category=UserWarning)
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "optim")


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


# ----------------------------------------------------------------------------- optimizers


class Lars:
    """torchlars.LARS semantics: hide each group's weight decay from the wrapped optimizer,
    add it to the gradient and scale the gradient by the trust ratio."""

    def __init__(self, opt, eps, trust_coef):
        self.opt, self.eps, self.trust_coef = opt, eps, trust_coef

    @torch.no_grad()
    def step(self):
        saved = []
        for group in self.opt.param_groups:
            wd = group.get("weight_decay", 0.0)
            saved.append(wd)
            group["weight_decay"] = 0
            for p in group["params"]:
                if p.grad is None:
                    continue
                pn, gn = p.norm(), p.grad.norm()
                if pn > 0 and gn > 0:
                    adaptive = pn / (gn + wd * pn + self.eps) * self.trust_coef
                else:
                    adaptive = torch.ones_like(pn)
                p.grad.add_(p.data, alpha=wd)
                p.grad.mul_(adaptive)
        self.opt.step()
        for group, wd in zip(self.opt.param_groups, saved):
            group["weight_decay"] = wd


def param_groups(named):
    reg, noreg = [], []
    for name, p in named:
        (noreg if name.endswith(".bias") or p.dim() == 1 else reg).append(p)
    return [{"params": reg}, {"params": noreg, "weight_decay": 0.0}]


def optimizer_case(name, kind, kwargs, steps=6, lars=None, clip=None, grad_scale=1.0, per_step=None):
    torch.manual_seed(len(name))
    named = [
        ("fc.weight", torch.randn(4, 3)),
        ("fc.bias", torch.randn(4)),
        ("norm.weight", torch.randn(3) + 1.0),
        ("pos_embed", torch.randn(1, 2, 3)),
    ]
    params = [(n, torch.nn.Parameter(t.clone())) for n, t in named]
    opt = getattr(optim, kind)(param_groups(params), **kwargs)
    stepper = Lars(opt, **lars) if lars else opt
    grads, after = [], []
    for s in range(steps):
        if per_step:
            for group in opt.param_groups:
                group["lr"] = per_step[s]["lr"]
                if "beta1" in per_step[s]:
                    group["betas"] = (per_step[s]["beta1"], group["betas"][1])
        g = [torch.randn_like(p) * grad_scale for _, p in params]
        for (_, p), gi in zip(params, g):
            p.grad = gi.clone()
        if clip:
            torch.nn.utils.clip_grad_norm_([p for _, p in params], clip)
        stepper.step()
        grads.append([flat(gi) for gi in g])
        after.append([flat(p) for _, p in params])
    return {
        "name": name,
        "kind": kind,
        "kwargs": kwargs,
        "lars": lars,
        "clip": clip,
        "per_step": per_step,
        "names": [n for n, _ in named],
        "shapes": [list(t.shape) for _, t in named],
        "initial": [flat(t) for _, t in named],
        "grads": grads,
        "after": after,
    }


def optimizer_cases():
    return [
        optimizer_case("adamw", "AdamW", {"lr": 1e-2, "weight_decay": 0.05}),
        optimizer_case("adamw_defaults", "AdamW", {"lr": 1e-3}),
        optimizer_case("adam_l2_amsgrad", "Adam", {"lr": 1e-2, "weight_decay": 0.01, "amsgrad": True}),
        optimizer_case("adam_betas_eps", "Adam", {"lr": 3e-3, "betas": [0.8, 0.99], "eps": 1e-6}),
        optimizer_case("sgd_plain", "SGD", {"lr": 0.1}),
        optimizer_case("sgd_nesterov", "SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
        optimizer_case("sgd_dampening", "SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1}),
        optimizer_case("lars_sgd", "SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
                       lars={"eps": 1e-8, "trust_coef": 0.001}),
        optimizer_case("lars_adamw", "AdamW", {"lr": 1e-2, "weight_decay": 0.05},
                       lars={"eps": 1e-8, "trust_coef": 0.02}),
        optimizer_case("adamw_clipped", "AdamW", {"lr": 1e-2, "weight_decay": 0.05}, clip=1.0, grad_scale=10.0),
        optimizer_case("adamw_scheduled", "AdamW", {"lr": 1e-2, "weight_decay": 0.05},
                       per_step=[{"lr": 1e-3 * (s + 1), "beta1": 0.95 - 0.02 * s} for s in range(6)]),
    ]


# ----------------------------------------------------------------------------- schedules


class LinearWarmup(LRScheduler):
    """The reference's LinearWarmup (utils/_utils.py) on torch 2.11's LRScheduler."""

    def __init__(self, optimizer, max_lr, warmup_iters=0, warmup_epochs=0, eta_min=1e-8, steps_per_epoch=None):
        if warmup_iters and warmup_epochs:
            warmup_iters = steps_per_epoch * warmup_epochs
        if not warmup_iters and not warmup_epochs:
            warmup_iters = 1
        elif warmup_epochs:
            warmup_iters = steps_per_epoch * warmup_epochs
        self.warmup_iters, self.eta_min, self.max_lr = warmup_iters, eta_min, max_lr
        for group in optimizer.param_groups:
            group["lr"] = eta_min
        super().__init__(optimizer)

    def get_lr(self):
        if self.last_epoch == -1:
            return [self.eta_min for _ in self.optimizer.param_groups]
        if self.last_epoch > self.warmup_iters:
            return [g["lr"] for g in self.optimizer.param_groups]
        return [g["lr"] + (1 / self.warmup_iters) * (self.max_lr - self.eta_min) for g in self.optimizer.param_groups]


def build_schedulers(opt, types, sp, lr, spe, epochs):
    """The reference's init_scheduler (parameters as its params.json spells them)."""
    scheds, warmup_iters = [], 0
    for t in types:
        if t == "LinearWarmup":
            s = LinearWarmup(opt, max_lr=lr, steps_per_epoch=spe, **sp.get("LinearWarmup", {}))
            warmup_iters = s.warmup_iters
        elif t == "OneCycleLR":
            kw = {"max_lr": lr, "steps_per_epoch": spe, "epochs": epochs, "div_factor": lr / 1e-8}
            if "LinearWarmup" in types:
                kw["div_factor"] = 1.0
            kw.update(sp.get("OneCycleLR", {}))
            s = optim.lr_scheduler.OneCycleLR(opt, **kw)
        elif t == "CosineAnnealingLR":
            t_max = spe * epochs - (warmup_iters if "LinearWarmup" in types else 0)
            s = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, **sp.get("CosineAnnealingLR", {}))
        elif t == "MultiStepLR":
            s = optim.lr_scheduler.MultiStepLR(opt, **sp["MultiStepLR"])
        elif t == "ReduceLROnPlateau":
            kw = dict(sp["ReduceLROnPlateau"])
            kw.pop("verbose", None)
            s = optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
        scheds.append((t, s))
    return scheds, warmup_iters


def mixer_step(scheds, it, spe, warmup_iters, val_target, val_loss):
    """The reference's MixedLRScheduler.step after `it` has been incremented."""
    for t, s in scheds:
        if t in ("LinearWarmup", "OneCycleLR"):
            s.step()
        elif t == "MultiStepLR":
            if (it + 1) % spe == 0:
                s.step()
        elif t == "ReduceLROnPlateau":
            if (it + 1) % spe == 0:
                s.step(val_loss if s.mode == "min" else val_target)
        elif t == "CosineAnnealingLR":
            if it > warmup_iters:
                s.step()


def schedule_case(name, kind, opt_kwargs, types, sp, spe, epochs, metrics=None):
    w = torch.nn.Parameter(torch.zeros(2, 2))
    b = torch.nn.Parameter(torch.zeros(2))
    opt = getattr(optim, kind)([{"params": [w]}, {"params": [b], "weight_decay": 0.0}], **opt_kwargs)
    lr = opt_kwargs["lr"]
    scheds, warmup_iters = build_schedulers(opt, types, sp, lr, spe, epochs)

    def snapshot():
        return [
            {"lr": g["lr"], "beta1": g["betas"][0] if "betas" in g else None, "momentum": g.get("momentum")}
            for g in opt.param_groups
        ]

    seq = [snapshot()]
    total = spe * epochs
    for it in range(1, total + 1):
        val_target, val_loss = (0.0, math.inf) if metrics is None else metrics[it - 1]
        mixer_step(scheds, it, spe, warmup_iters, val_target, val_loss)
        seq.append(snapshot())
    return {
        "name": name,
        "kind": kind,
        "opt_kwargs": opt_kwargs,
        "types": types,
        "params": sp,
        "steps_per_epoch": spe,
        "epochs": epochs,
        "metrics": [[a, b if math.isfinite(b) else "inf"] for a, b in metrics] if metrics else None,
        "sequence": seq,
    }


def schedule_cases():
    adamw = {"lr": 1e-3, "weight_decay": 0.05}
    plateau_metrics = [(0.5 + 0.1 * (i // 8 == 1), 1.0 - 0.01 * (i // 8 == 1)) for i in range(48)]
    return [
        schedule_case("warmup_iters", "AdamW", adamw, ["LinearWarmup"], {"LinearWarmup": {"warmup_iters": 10}}, 5, 4),
        schedule_case("warmup_epochs_wins", "AdamW", adamw, ["LinearWarmup"],
                      {"LinearWarmup": {"warmup_iters": 7, "warmup_epochs": 2}}, 4, 4),
        schedule_case("warmup_none", "AdamW", adamw, ["LinearWarmup"], {"LinearWarmup": {}}, 3, 2),
        schedule_case("warmup_cosine", "AdamW", adamw, ["LinearWarmup", "CosineAnnealingLR"],
                      {"LinearWarmup": {"warmup_iters": 7}, "CosineAnnealingLR": {"eta_min": 1e-6}}, 5, 6),
        schedule_case("cosine", "AdamW", adamw, ["CosineAnnealingLR"], {"CosineAnnealingLR": {"eta_min": 0.0}}, 6, 5),
        schedule_case("onecycle_cos", "AdamW", adamw, ["OneCycleLR"], {"OneCycleLR": {}}, 5, 6),
        schedule_case("warmup_onecycle_linear", "AdamW", adamw, ["LinearWarmup", "OneCycleLR"],
                      {"LinearWarmup": {"warmup_iters": 5},
                       "OneCycleLR": {"anneal_strategy": "linear", "final_div_factor": 1e-4}}, 4, 5),
        schedule_case("onecycle_sgd", "SGD", {"lr": 0.1, "momentum": 0.9}, ["OneCycleLR"],
                      {"OneCycleLR": {"pct_start": 0.25, "div_factor": 10.0}}, 4, 5),
        schedule_case("multistep", "AdamW", adamw, ["MultiStepLR"], {"MultiStepLR": {"milestones": [1, 2, 2], "gamma": 0.5}}, 4, 4),
        schedule_case("plateau_max", "AdamW", adamw, ["ReduceLROnPlateau"],
                      {"ReduceLROnPlateau": {"mode": "max", "factor": 0.5, "patience": 1, "verbose": True}}, 4, 12,
                      metrics=plateau_metrics),
        schedule_case("warmup_plateau_min_multistep", "Adam", {"lr": 2e-3}, ["LinearWarmup", "ReduceLROnPlateau", "MultiStepLR"],
                      {"LinearWarmup": {"warmup_epochs": 1},
                       "ReduceLROnPlateau": {"mode": "min", "factor": 0.1, "patience": 0, "cooldown": 1, "min_lr": 1e-6},
                       "MultiStepLR": {"milestones": [3], "gamma": 0.1}}, 4, 12, metrics=plateau_metrics),
    ]


def main():
    os.makedirs(OUT, exist_ok=True)
    for fname, cases in [("optimizers.json", optimizer_cases()), ("schedules.json", schedule_cases())]:
        path = os.path.join(OUT, fname)
        with open(path, "w") as f:
            json.dump({"torch": torch.__version__, "cases": cases}, f)
        print(f"wrote {path} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
