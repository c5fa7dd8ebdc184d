#!/usr/bin/env python3
"""The library's import graph: which file includes which (#include "..."),
and the same between folders of src/. Fails (exit 1) on a cycle between files,
a cycle between folders, or an arrow up the layering

    core < kernels < layers < graph < quant < exec < everything else (train, io, zoo,
    data, report, and src/internal.h, their umbrella)

so that core/ and kernels/ never reach into layers, the graph or the plan,
and a layer file never sees the graph or the plan.

    scripts/import_graph.py          check (make lint runs it)
    scripts/import_graph.py --dot    print the folder graph for Graphviz
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RANK = {"core": 0, "kernels": 1, "layers": 2, "graph": 3, "quant": 4, "exec": 5}
UPPER = 6  # train, io, zoo, data, report, src/internal.h
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def files():
    for top in ("src", "include"):
        for d, _, names in os.walk(os.path.join(ROOT, top)):
            for n in sorted(names):
                if n.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(d, n), ROOT)


def resolve(f, inc):
    for base in (os.path.dirname(f), "src", "include"):
        p = os.path.normpath(os.path.join(base, inc))
        if os.path.exists(os.path.join(ROOT, p)):
            return p
    return None  # a system or generated header


def folder(f):
    """src/<dir>/x.c -> <dir>; src/internal.h -> 'src'; include/... -> 'include'."""
    parts = f.split(os.sep)
    if parts[0] == "include":
        return "include"
    return parts[1] if len(parts) > 2 else "src"


def rank(d):
    if d == "include":
        return -1  # the public header: below everything
    return RANK.get(d, UPPER)


def cycles(graph):
    """Every strongly connected component with more than one node (or a self loop)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    edges = {}
    for f in files():
        with open(os.path.join(ROOT, f), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        edges[f] = set()
        for inc in INCLUDE.findall(text):
            p = resolve(f, inc)
            if p and p != f:
                edges[f].add(p)
    dirs = {}
    for f, targets in edges.items():
        for t in targets:
            a, b = folder(f), folder(t)
            if a != b:
                dirs.setdefault(a, set()).add(b)
    if "--dot" in sys.argv:
        print("digraph graft {\n  rankdir=BT;")
        for a in sorted(dirs):
            for b in sorted(dirs[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    problems = []
    for comp in cycles(edges):
        problems.append("include cycle between files: " + " -> ".join(comp))
    for comp in cycles(dirs):
        problems.append("include cycle between folders: " + " -> ".join(comp))
    for f, targets in sorted(edges.items()):
        for t in sorted(targets):
            if rank(folder(t)) > rank(folder(f)):
                problems.append(f"{f} includes {t}: an arrow up from {folder(f)}/ to {folder(t)}/")
    for p in problems:
        print("import graph:", p)
    n_edges = sum(len(t) for t in edges.values())
    print(f"import graph: {len(edges)} files, {n_edges} includes, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
