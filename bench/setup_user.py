#!/usr/bin/env python3
"""Creates a benchmark user with signed device keys on a running Roam server (stdlib + openssl).

Usage: setup_user.py BASE_URL USERNAME   → prints the access token on stdout.
The device keys are really signed (Ed25519 via the openssl CLI over Matrix canonical JSON),
so /keys/query in the benchmark returns what a client would verify.
"""

import base64
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request


def call(base, method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def b64(data):
    return base64.b64encode(data).decode().rstrip("=")


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def main(base, username):
    status, v = call(base, "POST", "/_matrix/client/v3/register",
                     {"username": username, "password": "bench-password", "auth": {"type": "m.login.dummy"}})
    if status != 200:
        sys.exit(f"register failed: {status} {v}")
    token, user_id, device = v["access_token"], v["user_id"], v["device_id"]
    with tempfile.TemporaryDirectory() as d:
        key = f"{d}/key.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True, capture_output=True)
        der = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"], check=True, capture_output=True).stdout
        public = der[-32:]
        keys = {
            "user_id": user_id,
            "device_id": device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{device}": b64(bytes(32)), f"ed25519:{device}": b64(public)},
        }
        with open(f"{d}/msg", "wb") as f:
            f.write(canonical(keys))
        sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", key, "-in", f"{d}/msg"],
                             check=True, capture_output=True).stdout
    keys["signatures"] = {user_id: {f"ed25519:{device}": b64(sig)}}
    status, v = call(base, "POST", "/_matrix/client/v3/keys/upload", {"device_keys": keys}, token)
    if status != 200:
        sys.exit(f"keys upload failed: {status} {v}")
    print(token)


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), sys.argv[2])
