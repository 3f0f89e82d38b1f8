#!/usr/bin/env python3
"""Two devices of one user verify each other by emoji (SAS) with matrix-nio, over a Roam server.

Usage: test_sas.py BASE_URL     e.g. test_sas.py http://127.0.0.1:8008

Every step of the verification travels as a to-device message (`PUT /sendToDevice`) and
arrives through `/sync`: start -> accept -> both keys -> both sides compute the same seven
emoji -> both confirm -> both MACs -> each device marks the other verified. Then a message
already delivered is not delivered again. Exits non-zero on the first failure, naming the step.
"""

import asyncio
import secrets
import sys
import tempfile

from nio import (
    AsyncClient,
    AsyncClientConfig,
    KeysQueryResponse,
    LoginResponse,
    RegisterResponse,
    SyncResponse,
    ToDeviceResponse,
)
from nio.events import KeyVerificationStart


def check(ok, step, detail=""):
    if not ok:
        print(f"FAIL: {step}: {detail}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {step}")


def client(base, user, store):
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    return AsyncClient(base, user, store_path=store, config=config)


async def sync(c, name, timeout=0):
    r = await c.sync(timeout=timeout)
    check(isinstance(r, SyncResponse), f"sync {name}", r)
    return r


async def send(c, message, step):
    r = await c.to_device(message)
    check(isinstance(r, ToDeviceResponse), step, r)


async def setup(a, b, username, password):
    r = await a.register(username, password, device_name="nio laptop")
    check(isinstance(r, RegisterResponse), "register", r)
    user_id = r.user_id
    r = await a.login(password, device_name="nio laptop")
    check(isinstance(r, LoginResponse), "login device A", r)
    r = await b.login(password, device_name="nio phone")
    check(isinstance(r, LoginResponse), "login device B", r)
    for c, name in ((a, "A"), (b, "B")):
        r = await c.keys_upload()
        check(r.__class__.__name__ == "KeysUploadResponse", f"keys upload {name}", r)
    for c, name in ((a, "A"), (b, "B")):
        await sync(c, f"{name} (first)")
        c.olm.users_for_key_query.add(user_id)
        r = await c.keys_query()
        check(isinstance(r, KeysQueryResponse), f"keys query {name}", r)
    return user_id


async def verify(a, b, user_id):
    device_b = a.device_store[user_id][b.device_id]
    check(not device_b.verified, "device B not verified yet")
    await send(a, a.create_key_verification(device_b), "A starts SAS with B")
    r = await sync(b, "B receives the start", timeout=5000)
    starts = [e for e in r.to_device_events if isinstance(e, KeyVerificationStart)]
    check(len(starts) == 1, "one m.key.verification.start through /sync", r.to_device_events)
    tx = starts[0].transaction_id
    check(tx in b.key_verifications, "B has the verification", list(b.key_verifications))
    await send(b, b.key_verifications[tx].accept_verification(), "B accepts")
    await sync(a, "A receives the accept", timeout=5000)
    sas_a = a.key_verifications[tx]
    await send(a, sas_a.share_key(), "A sends its key")
    await sync(b, "B receives A's key", timeout=5000)
    sas_b = b.key_verifications[tx]
    await send(b, sas_b.share_key(), "B sends its key")
    await sync(a, "A receives B's key", timeout=5000)
    emoji_a, emoji_b = sas_a.get_emoji(), sas_b.get_emoji()
    check(len(emoji_a) == 7 and emoji_a == emoji_b, "both devices show the same seven emoji", (emoji_a, emoji_b))
    print("   emoji: " + " ".join(f"{e} ({n})" for e, n in emoji_a))
    r = await a.confirm_short_auth_string(tx)
    check(isinstance(r, ToDeviceResponse), "A confirms (sends its MAC)", r)
    await sync(b, "B receives A's MAC", timeout=5000)
    r = await b.confirm_short_auth_string(tx)
    check(isinstance(r, ToDeviceResponse), "B confirms (sends its MAC)", r)
    await sync(a, "A receives B's MAC", timeout=5000)
    check(sas_a.verified and sas_b.verified, "both sides verified", (sas_a.state, sas_b.state))
    check(a.device_store[user_id][b.device_id].verified, "A trusts device B")
    check(b.device_store[user_id][a.device_id].verified, "B trusts device A")


async def main(base):
    with tempfile.TemporaryDirectory() as store1, tempfile.TemporaryDirectory() as store2:
        username = "sas" + secrets.token_hex(4)
        a = client(base, username, store1)
        b = client(base, username, store2)
        try:
            user_id = await setup(a, b, username, "sas-" + secrets.token_hex(8))
            await verify(a, b, user_id)
            # Everything was acknowledged by the next sync: nothing comes twice.
            r = await sync(b, "B syncs again")
            check(not r.to_device_events, "no to-device message delivered twice", r.to_device_events)
        finally:
            await a.close()
            await b.close()
    print("matrix-nio SAS verification passed")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    asyncio.run(main(sys.argv[1].rstrip("/")))
