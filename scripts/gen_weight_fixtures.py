"""Generate the small checkpoint fixtures of tests/weights.rs (run: .venv/bin/python scripts/gen_weight_fixtures.py).

Each fixture is written with torch.save / safetensors the way published checkpoints are, and
`expected.safetensors` records what `torch.load` returns for every tensor the Rust reader must
produce (named `<fixture>/<key>`, after prefix stripping where the test asks for it), so the
tests compare every value exactly.
"""

import argparse
import collections
import io
import os
import sys
import zipfile

import numpy as np
import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "weights")


class Tiny(torch.nn.Module):
    """A small module with the usual state-dict content: weights, biases, a LayerNorm, and
    BatchNorm buffers (float running stats and the int64 `num_batches_tracked`)."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 3)
        self.norm = torch.nn.LayerNorm(3)
        self.bn = torch.nn.BatchNorm1d(3)
        self.fc2 = torch.nn.Linear(3, 2, bias=False)


def tiny_state_dict(seed):
    torch.manual_seed(seed)
    m = Tiny()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.5, 2)
        m.bn.num_batches_tracked.fill_(7 + seed)
    return m.state_dict()  # an OrderedDict carrying `_metadata`


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}

    def save(name, obj, expect, **kw):
        torch.save(obj, os.path.join(OUT, name), **kw)
        # What torch.load gives back is the ground truth for the Rust reader.
        loaded = torch.load(os.path.join(OUT, name), weights_only=False)
        for key, ref in expect(loaded).items():
            expected[f"{name}/{key}"] = ref.detach().resolve_neg().contiguous().clone()

    sd = tiny_state_dict(0)
    save("plain.pth", sd, lambda l: l)
    for proto in (1, 4, 5):
        save(f"proto{proto}.pth", tiny_state_dict(proto), lambda l: l, pickle_protocol=proto)

    ns = argparse.Namespace(lr=0.1, model="vit_base", layers=[1, 2], nested=argparse.Namespace(a=1))
    save("nested_args.pth", {"model": tiny_state_dict(1), "args": ns, "epoch": 3}, lambda l: l["model"])

    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = model.fc2(model.bn(model.norm(model.fc1(torch.randn(5, 4))))).sum()
    loss.backward()
    opt.step()
    save(
        "ema.pth",
        {"model": tiny_state_dict(2), "model_ema": tiny_state_dict(3), "optimizer": opt.state_dict(), "epoch": 9},
        lambda l: {f"model/{k}": v for k, v in l["model"].items()}
        | {f"model_ema/{k}": v for k, v in l["model_ema"].items()},
    )

    torch.manual_seed(4)
    dtypes = {
        "w16": torch.randn(3, 5).half(),
        "wbf16": torch.randn(2, 7).bfloat16(),
        "w64": torch.randn(4).double(),
        "big16": torch.tensor([65504.0, -65504.0, 6.1e-5, -0.0, 1.0], dtype=torch.float16),
        "ids": torch.arange(-3, 6, dtype=torch.int64),
        "i32": torch.tensor([-(2**31), 2**31 - 1, 0], dtype=torch.int32),
        "mask": torch.tensor([True, False, True]),
        "bytes": torch.arange(250, 256, dtype=torch.uint8),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }
    save("dtypes.pth", dtypes, lambda l: l)

    # Views: every entry shares one storage, most are non-contiguous or offset.
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
    views = {
        "base": base,
        "t": base.t(),
        "slice": base[1:3, 2:5],
        "col": base[:, 3],
        "step": base[::2, ::3],
        "flat_tail": base.view(-1)[5:17],
        "expanded": base[0, :4].unsqueeze(0).expand(3, 4),
        "perm": base.reshape(2, 3, 4).permute(2, 0, 1),
    }
    save("views.pth", views, lambda l: l)

    # Parameters (not detached) and a tensor with a Python attribute (_rebuild_from_type_v2).
    p = torch.nn.Parameter(torch.randn(2, 3))
    tagged = torch.randn(3)
    tagged.note = "extra attribute"
    # A lazily negated view (`torch._neg_view`) is saved with metadata {'neg': True} over the
    # un-negated storage.
    save("params.pth", {"p": p, "tagged": tagged, "neg": torch._neg_view(torch.randn(2))}, lambda l: l)

    # numpy objects next to the weights (refused globals that must not abort the load).
    save(
        "numpy_scalar.pth",
        {"state_dict": tiny_state_dict(5), "best_acc": np.float64(0.875), "hist": np.arange(3), "cfg": {"lr": 1e-3}},
        lambda l: l["state_dict"],
    )

    # Prefixes: DataParallel's `module.` and open_clip's `visual.` next to a text tower.
    save("module_prefix.pth", collections.OrderedDict((f"module.{k}", v) for k, v in tiny_state_dict(6).items()),
         lambda l: {k[len("module."):]: v for k, v in l.items()})
    clip = {f"visual.{k}": v for k, v in tiny_state_dict(7).items()}
    clip["text.token_embedding.weight"] = torch.randn(5, 3)
    clip["logit_scale"] = torch.tensor(4.6)
    save("clip_like.bin", clip, lambda l: {(k[len("visual."):] if k.startswith("visual.") else k): v for k, v in l.items()})

    # A state dict holding a refused object: loading it must fail naming the global.
    bad = dict(tiny_state_dict(8))
    bad["schedule"] = argparse.Namespace(warmup=5)
    torch.save(bad, os.path.join(OUT, "forbidden.pth"))

    # The legacy (non-zip) format of torch < 1.6.
    save("legacy.pth", tiny_state_dict(9), lambda l: l, _use_new_zipfile_serialization=False)
    for proto in (1, 4):
        save(f"legacy_proto{proto}.pth", tiny_state_dict(10 + proto), lambda l: l,
             _use_new_zipfile_serialization=False, pickle_protocol=proto)

    # A big-endian archive, rewritten by hand from views.pth (torch.load honours `byteorder`).
    write_big_endian(os.path.join(OUT, "views.pth"), os.path.join(OUT, "views_be.pth"))
    loaded = torch.load(os.path.join(OUT, "views_be.pth"))
    for key, ref in loaded.items():
        assert torch.equal(ref, views[key]), key
        expected[f"views_be.pth/{key}"] = ref.contiguous().clone()

    # safetensors (the timm / Hugging Face format).
    torch.manual_seed(10)
    st = {
        "patch_embed.proj.weight": torch.randn(4, 3, 2, 2),
        "blocks.0.attn.qkv.weight": torch.randn(6, 2).half(),
        "blocks.0.attn.qkv.bias": torch.randn(6).bfloat16(),
        "pos_embed": torch.randn(1, 5, 2).double(),
        "counter": torch.tensor([3, -4], dtype=torch.int64),
        "mask": torch.tensor([True, False]),
        "empty": torch.zeros(0),
    }
    save_file(st, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})
    for k, v in st.items():
        expected[f"model.safetensors/{k}"] = v

    write_pickle_cases(os.path.join(OUT, "pickle_cases.pkl"))

    save_file(expected, os.path.join(OUT, "expected.safetensors"))
    for f in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, f)):8d}  {f}")


def random_object(rng, depth=0):
    """A random plain-data object of the kinds checkpoints hold next to tensors, sharing some
    sub-objects (memo references)."""
    scalars = [
        lambda: None, lambda: rng.random() < 0.5,
        lambda: rng.randint(-300, 300), lambda: rng.randint(-(2**63), 2**63 - 1),
        lambda: rng.randint(2**63, 2**200) * rng.choice([-1, 1]),
        lambda: rng.uniform(-1e6, 1e6), lambda: float(rng.choice(["inf", "-inf", "0.0", "-0.0", "1e-310"])),
        lambda: "".join(rng.choice("ab\u00e9\u4e2d\U0001f600 '\"\\\n") for _ in range(rng.randint(0, 6))),
        lambda: bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 6))),
        lambda: bytearray(rng.randint(0, 255) for _ in range(rng.randint(0, 3))),
    ]
    if depth >= 3 or rng.random() < 0.4:
        return rng.choice(scalars)()
    n = rng.randint(0, 4)
    kind = rng.choice(["list", "tuple", "dict", "set", "frozenset", "ordered"])
    if kind in ("set", "frozenset"):
        items = {rng.choice(scalars[:4] + scalars[7:9])() for _ in range(n)}
        return set(items) if kind == "set" else frozenset(items)
    children = [random_object(rng, depth + 1) for _ in range(n)]
    if children and rng.random() < 0.3:
        children.append(children[0])  # the same object twice
    if kind == "list":
        return children
    if kind == "tuple":
        return tuple(children)
    keys = [rng.choice([rng.randint(-5, 5), "k%d" % i, (i, "t")]) for i in range(len(children))]
    d = dict(zip(keys, children))
    return collections.OrderedDict(d) if kind == "ordered" else d


def canon(x):
    """A canonical text form, mirrored by `canon` in crates/ckpt/tests/pickle.rs."""
    import pickle
    import struct
    if x is None:
        return "N"
    if isinstance(x, bool):
        return "T" if x else "F"
    if isinstance(x, int):
        return f"i{x}" if -(2**63) <= x < 2**63 else "I" + pickle.encode_long(x).hex()
    if isinstance(x, float):
        return "f" + struct.pack(">d", x).hex()
    if isinstance(x, str):
        return "s" + x.encode("utf-8").hex()
    if isinstance(x, (bytes, bytearray)):
        return "b" + bytes(x).hex()
    if isinstance(x, list):
        return "[" + ",".join(canon(v) for v in x) + "]"
    if isinstance(x, tuple):
        return "(" + ",".join(canon(v) for v in x) + ")"
    if isinstance(x, dict):
        return "{" + ",".join(canon(k) + ":" + canon(v) for k, v in x.items()) + "}"
    if isinstance(x, (set, frozenset)):
        return "<" + ",".join(sorted(canon(v) for v in x)) + ">"
    raise TypeError(type(x))


def write_pickle_cases(path):
    """Random objects pickled with every protocol, with their canonical form: the Rust
    unpickler must rebuild exactly the same values (a differential test against CPython)."""
    import pickle
    import random
    rng = random.Random(1234)
    cases = []
    for _ in range(40):
        obj = random_object(rng)
        for proto in range(6):
            cases.append((proto, pickle.dumps(obj, protocol=proto), canon(obj)))
    with open(path, "wb") as f:
        pickle.dump(cases, f, protocol=4)


def write_big_endian(src, dst):
    """Copy a torch.save zip, flipping `byteorder` to big and byte-swapping each storage. The
    element size of each storage is read from the loaded tensors (all views.pth tensors are f32)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        prefix = zin.namelist()[0].split("/")[0] + "/"
        for info in zin.infolist():
            data = zin.read(info.filename)
            name = info.filename[len(prefix):]
            if name == "byteorder":
                data = b"big"
            elif name.startswith("data/"):
                data = np.frombuffer(data, dtype="<f4").astype(">f4").tobytes()
            zout.writestr("views_be/" + name, data)


if __name__ == "__main__":
    sys.exit(main())
