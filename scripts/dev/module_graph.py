#!/usr/bin/env python3
"""The dependency graph of src/'s top-level modules, its cycles, and the dataset names that
code outside src/data/ and src/models/ mentions (docs/architecture.md, "Adding a dataset").

An edge A -> B is a `crate::B` path in a file of module A (comments left out; `super::` stays
inside a module). Test modules count: a cycle through test code is still a cycle to a reader.
The dataset names are the `id`s of the rows in src/data/datasets/; a mention is one in code or
a string outside src/data/ and src/models/, comments, unit-test modules (from `#[cfg(test)]` to
the end of the file, the crate's layout) and the params documentation table
(src/config/params_doc.rs) left out. `CSV` is left out too: it is also the file format's name,
which the code says everywhere.

Usage: python3 scripts/dev/module_graph.py [SRC]   (exit status 1 when a cycle or a mention is
found)
"""
import os
import re
import sys


def strip_comments(text):
    # Line comments only (the crate has no block comments); a `//` inside a string literal is
    # cut too, which can only hide an edge that a `use` line states anyway.
    return re.sub(r"//[^\n]*", "", text)


def modules(src):
    tops = set()
    for name in os.listdir(src):
        path = os.path.join(src, name)
        if name.endswith(".rs"):
            tops.add(name[:-3])
        elif os.path.isdir(path):
            tops.add(name)
    return tops - {"main", "lib"}


def files(src):
    for dirpath, _, names in os.walk(src):
        for name in sorted(names):
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                yield path, os.path.relpath(path, src)


def edges(src, tops):
    out = {t: set() for t in tops}
    for path, rel in files(src):
        top = rel.split(os.sep)[0].removesuffix(".rs")
        if top not in tops:
            continue
        with open(path, encoding="utf-8") as f:
            text = strip_comments(f.read())
        for m in re.finditer(r"crate::([a-z_][a-z0-9_]*)", text):
            if m.group(1) in tops and m.group(1) != top:
                out[top].add(m.group(1))
    return out


def cycles(graph):
    """Tarjan's strongly connected components with more than one module."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def dataset_names(src):
    names = set()
    # Also the name of the file format (see the module doc).
    common_words = {"CSV"}
    table = os.path.join(src, "data", "datasets")
    for name in os.listdir(table):
        if name.endswith(".rs"):
            with open(os.path.join(table, name), encoding="utf-8") as f:
                names.update(re.findall(r'^\s*id: "([^"]+)"', f.read(), re.M))
    return names - common_words


def mentions(src, names):
    allowed = ("data" + os.sep, "models" + os.sep, os.path.join("config", "params_doc.rs"))
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, names))) + r")\b")
    out = []
    for path, rel in files(src):
        if rel.startswith(allowed):
            continue
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.startswith("#[cfg(test)]"):
                    break
                code = strip_comments(line)
                if pattern.search(code):
                    out.append(f"{rel}:{i}: {line.strip()}")
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "src")
    tops = modules(src)
    graph = edges(src, tops)
    for m in sorted(graph):
        print(f"{m} -> {' '.join(sorted(graph[m])) or '(nothing)'}")
    found = cycles(graph)
    print("cycles:", "; ".join(" <-> ".join(c) for c in found) if found else "none")
    names = dataset_names(src)
    said = mentions(src, names)
    print(f"dataset names ({', '.join(sorted(names))}) outside data/, models/ and the tables:",
          "none" if not said else "")
    for line in said:
        print("  " + line)
    sys.exit(1 if found or said else 0)


if __name__ == "__main__":
    main()
