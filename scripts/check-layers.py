#!/usr/bin/env python3
"""Fails when a crate's modules import each other in a circle.

For every library/binary crate of the workspace, builds the graph of `crate::…` and `super::…`
paths between modules (test modules excluded) and reports every cycle:
- between top-level modules of a crate (`state` -> `metrics` -> `state`), and
- between sibling modules of one directory (`store/redb_logs` -> `store/redb_store` -> …).
A parent using its own child (re-exports, `mod` items) is not a cycle by itself; a child
reaching back into its parent is fine too — that is how Rust modules share a vocabulary.
It also checks that the `roam` binary built without the `serve` feature does not link axum.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = ["identity-core", "vc", "resolver", "client", "server", "cli"]
PATH_RE = re.compile(r"\b(crate|super)((?:::\w+)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super)::\{([^;]*)\};", re.S)


def strip_tests(src):
    """Drops `#[cfg(test)]` items (a module or function up to its closing brace)."""
    out, i = [], 0
    while True:
        j = src.find("#[cfg(test)]", i)
        if j < 0:
            out.append(src[i:])
            return "".join(out)
        out.append(src[i:j])
        k = src.find("{", j)
        semi = src.find(";", j)
        if k < 0 or (0 <= semi < k):
            i = semi + 1
            continue
        depth = 0
        for m in range(k, len(src)):
            if src[m] == "{":
                depth += 1
            elif src[m] == "}":
                depth -= 1
                if depth == 0:
                    i = m + 1
                    break
        else:
            return "".join(out)


def module_files(src_dir):
    mods = {}
    for dp, _, files in os.walk(src_dir):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dp, f), src_dir)[:-3].split(os.sep)
            if rel[-1] == "mod":
                rel = rel[:-1]
            if rel in (["lib"], ["main"]):
                rel = []
            mods[tuple(rel)] = os.path.join(dp, f)
    return mods


def deepest(mods, path):
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in mods:
            return tuple(path[:n])
    return ()


def edges(mods):
    graph = {m: set() for m in mods}
    for m, file in mods.items():
        src = re.sub(r"//[^\n]*", "", strip_tests(open(file, encoding="utf-8").read()))
        paths = []
        for kw, rest in PATH_RE.findall(src):
            paths.append((kw, [p for p in rest.split("::") if p]))
        for kw, group in USE_GROUP_RE.findall(src):
            for item in re.split(r",(?![^{]*\})", group):
                head = item.strip().split("::")[0].strip("{} ")
                if head:
                    paths.append((kw, [head]))
        for kw, segs in paths:
            base = [] if kw == "crate" else list(m[:-1])
            while segs and segs[0] == "super":
                base, segs = base[:-1], segs[1:]
            target = deepest(mods, base + segs)
            if target != m:
                graph[m].add(target)
    return graph


def cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def name(m):
    return "::".join(m) or "(crate root)"


def check_crate(crate):
    mods = module_files(os.path.join(ROOT, crate, "src"))
    graph = edges(mods)
    problems = []
    top = {}
    for a, targets in graph.items():
        for b in targets:
            if a and b and a[0] != b[0]:
                top.setdefault(a[:1], set()).add(b[:1])
    for comp in cycles(top):
        problems.append(f"{crate}: top-level modules import each other: {', '.join(map(name, comp))}")
    siblings = {}
    for a, targets in graph.items():
        for b in targets:
            if len(a) == len(b) and a[:-1] == b[:-1] and len(a) > 1:
                siblings.setdefault(a, set()).add(b)
    for comp in cycles(siblings):
        problems.append(f"{crate}: sibling modules import each other: {', '.join(map(name, comp))}")
    return problems, len(mods)


def main():
    problems, count = [], 0
    for crate in CRATES:
        p, n = check_crate(crate)
        problems += p
        count += n
    tree = subprocess.run(
        ["cargo", "tree", "-p", "roam-cli", "--no-default-features", "-e", "normal",
         "--prefix", "none", "--locked", "--offline"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if tree.returncode != 0:
        problems.append("cargo tree failed: " + tree.stderr.strip()[-400:])
    elif re.search(r"^axum ", tree.stdout, re.M):
        problems.append("roam-cli without the `serve` feature links axum")
    for p in problems:
        print("layers:", p)
    print(f"layers: {count} modules in {len(CRATES)} crates, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
