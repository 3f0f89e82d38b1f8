#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from spec/vectors/*.json (idempotent; the corpus is not
committed). roam_api's seeds are written by the target itself (ROAM_FUZZ_SEEDS, see
scripts/fuzz.sh): they need signatures made with the harness's keys."""
import hashlib
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def vectors(name):
    with open(os.path.join(ROOT, "spec", "vectors", name), encoding="utf-8") as f:
        return json.load(f)["vectors"]


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16])
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)


def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def walk(v, out):
    """Every string of a JSON value (IDs, keys, names) and every object key."""
    if isinstance(v, str):
        out.add(v)
    elif isinstance(v, list):
        for x in v:
            walk(x, out)
    elif isinstance(v, dict):
        for k, x in v.items():
            out.add(k)
            walk(x, out)


def main():
    for v in vectors("canonical-json.json"):
        put("canonical_json", v["input"])
    strings = set()
    for v in vectors("server-names.json"):
        put("ids", v["input"])
    for v in vectors("did-key.json"):
        put("did_key", v["input"])
    for v in vectors("account-log.json"):
        inp = v["input"]
        if "ops" in inp:
            ops = inp["ops"]
            put("log_ops", compact(ops))
            for op in ops:
                put("log_ops", compact(op))
            walk(ops, strings)
        elif "ops_raw" in inp:
            put("log_ops", "[" + ",".join(inp["ops_raw"]) + "]")
            for raw in inp["ops_raw"]:
                put("log_ops", raw)
                put("canonical_json", raw)
    for v in vectors("bundles.json"):
        put("bundle", compact(v["input"]))
        walk(v["input"], strings)
    for s in sorted(strings):
        if len(s) <= 300 and (s.startswith("@") or ":" in s or "." in s or s.isalnum()):
            if s.startswith("did:"):
                put("did_key", s)
            else:
                put("ids", s)
    # log_mutate reads mutation choices: a few byte patterns to start from.
    for i in range(16):
        put("log_mutate", bytes([i, i * 7 % 256, 0, i, 3, 1, 0, i * 13 % 256]))
    for t in sorted(os.listdir(CORPUS)):
        n = len(os.listdir(os.path.join(CORPUS, t)))
        print(f"   corpus {t}: {n} files", file=sys.stderr)


if __name__ == "__main__":
    main()
