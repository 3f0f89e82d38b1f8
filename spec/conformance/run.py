#!/usr/bin/env python3
"""Runs an implementation's conformance command over every Roam vector.

Usage: python3 spec/conformance/run.py [--vectors DIR] [--only SUITE] -- COMMAND [ARGS...]

For each vector in DIR/*.json (default: spec/vectors beside this folder), COMMAND is started
once with one request on standard input and must print one answer on standard output, both
JSON objects (the contract is in spec/vectors/README.md):

  request: {"suite": <the vector file's name without .json, e.g. "account-log">,
            "now": <the file's "now" in ms, or null>, "input": <the vector's input>}
  answer:  {"valid": true, "expected": <same shape as the vector's expected>}
       or  {"valid": false, "error": {"class": "...", "index": N?, "evidence": [h1, h2]?}}

An answer passes when `valid` matches and, for valid vectors, `expected` is equal (lists
named in SETS compare as sets), or, for invalid ones, the error class is equal and so are
`index` and `evidence` where the vector gives them. Prints each failure and then
`N passed, M failed`; exits 1 when anything failed or the command could not be run.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VECTORS = os.path.join(os.path.dirname(HERE), "vectors")
# Fields whose order the vectors do not fix.
SETS = {"superseded"}
TIMEOUT_S = 30


def normalise(value, key=None):
    if isinstance(value, dict):
        return {k: normalise(v, k) for k, v in value.items()}
    if isinstance(value, list):
        items = [normalise(v) for v in value]
        if key in SETS:
            return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))
        return items
    return value


def judge(vector, answer):
    """None when the answer agrees with the vector, else why not."""
    if not isinstance(answer, dict) or not isinstance(answer.get("valid"), bool):
        return f"answer is not {{'valid': bool, ...}}: {answer!r}"[:300]
    if answer["valid"] != vector["valid"]:
        got = answer.get("error") if not answer["valid"] else "valid"
        want = vector.get("error") if not vector["valid"] else "valid"
        return f"want {json.dumps(want)}, got {json.dumps(got)}"[:300]
    if vector["valid"]:
        if normalise(answer.get("expected")) != normalise(vector["expected"]):
            return (f"want {json.dumps(vector['expected'], sort_keys=True)}, "
                    f"got {json.dumps(answer.get('expected'), sort_keys=True)}")[:600]
        return None
    want, got = vector["error"], answer.get("error") or {}
    for field in ("class", "index", "evidence"):
        if field in want and normalise(got.get(field), "superseded") != normalise(want[field], "superseded"):
            return f"error {field}: want {json.dumps(want[field])}, got {json.dumps(got.get(field))}"
    return None


def run_one(command, suite, now, vector):
    request = json.dumps({"suite": suite, "now": now, "input": vector["input"]})
    try:
        done = subprocess.run(command, input=request, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except FileNotFoundError:
        sys.exit(f"conformance: cannot run {command[0]!r}: not found")
    except subprocess.TimeoutExpired:
        return None, f"no answer within {TIMEOUT_S} s"
    try:
        return json.loads(done.stdout), None
    except json.JSONDecodeError:
        return None, (f"exit {done.returncode}, stdout is not JSON: {done.stdout[:200]!r}"
                      f" stderr: {done.stderr[:200]!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", default=DEFAULT_VECTORS)
    parser.add_argument("--only", help="run one suite (file name without .json)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the implementation's command after --")
    passed = failed = 0
    for name in sorted(os.listdir(args.vectors)):
        if not name.endswith(".json"):
            continue
        suite = name[:-5]
        if args.only and suite != args.only:
            continue
        with open(os.path.join(args.vectors, name), encoding="utf-8") as f:
            data = json.load(f)
        for vector in data["vectors"]:
            answer, problem = run_one(command, suite, data.get("now"), vector)
            problem = problem or judge(vector, answer)
            if problem:
                failed += 1
                print(f"FAIL {suite}/{vector['name']}: {problem}")
            else:
                passed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
