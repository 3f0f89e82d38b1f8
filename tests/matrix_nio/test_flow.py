#!/usr/bin/env python3
"""An independent Matrix client (matrix-nio, with end-to-end encryption) against a Roam server.

Usage: test_flow.py BASE_URL     e.g. test_flow.py http://127.0.0.1:8008

Flow: register -> log in a second device -> both upload device and one-time keys (nio's own
olm machine) -> keys/query, whose device signatures nio verifies before it stores a device ->
keys/claim, whose signed one-time key nio verifies before it opens an Olm session ->
devices list/rename -> delete a device with password UIA -> logout. Exits non-zero on the
first failure, naming the step.
"""

import asyncio
import secrets
import sys
import tempfile

from nio import (
    AsyncClient,
    AsyncClientConfig,
    DeleteDevicesAuthResponse,
    DeleteDevicesResponse,
    DevicesResponse,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    LoginResponse,
    LogoutResponse,
    RegisterResponse,
    UpdateDeviceResponse,
    WhoamiError,
    WhoamiResponse,
)


def check(ok, step, detail=""):
    if not ok:
        print(f"FAIL: {step}: {detail}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {step}")


def client(base, user, store):
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    return AsyncClient(base, user, store_path=store, config=config)


async def main(base):
    username = "nio" + secrets.token_hex(4)
    password = "nio-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory() as store1, tempfile.TemporaryDirectory() as store2:
        a = client(base, username, store1)
        b = client(base, username, store2)
        try:
            r = await a.register(username, password, device_name="nio laptop")
            check(isinstance(r, RegisterResponse), "register", r)
            user_id = r.user_id
            dev_a = r.device_id
            # nio's register does not open the crypto store; logging in again on the same
            # device ID does (and replaces the device's access token, as the spec says).
            old_token = a.access_token
            r = await a.login(password, device_name="nio laptop")
            check(isinstance(r, LoginResponse) and r.device_id == dev_a, "login device A again", r)
            check(r.access_token != old_token, "new token for the re-used device")
            r = await b.login(password, device_name="nio phone")
            check(isinstance(r, LoginResponse), "login device B", r)
            dev_b = r.device_id
            check(dev_a != dev_b, "two distinct devices")

            for c, name in ((a, "A"), (b, "B")):
                check(c.should_upload_keys, f"device {name} wants to upload keys")
                r = await c.keys_upload()
                check(isinstance(r, KeysUploadResponse), f"keys upload {name}", r)
                check(r.signed_curve25519_count > 0, f"one-time key count {name}", r.signed_curve25519_count)

            r = await a.whoami()
            check(isinstance(r, WhoamiResponse) and r.user_id == user_id and r.device_id == dev_a, "whoami", r)

            # A queries the user's keys; nio verifies each device's self-signature and only
            # then adds it to its device store.
            a.olm.users_for_key_query.add(user_id)
            r = await a.keys_query()
            check(isinstance(r, KeysQueryResponse), "keys query", r)
            devices = a.device_store[user_id]
            check(dev_b in devices, "device B verified and stored by A", list(devices.keys()))
            check(
                devices[dev_b].ed25519 == b.olm.account.identity_keys["ed25519"],
                "device B's ed25519 key as B holds it",
            )
            check(devices[dev_b].display_name == "nio phone", "display name in unsigned", devices[dev_b].display_name)

            # A claims one of B's one-time keys; nio checks its signature before making a session.
            r = await a.keys_claim({user_id: [dev_b]})
            check(isinstance(r, KeysClaimResponse), "keys claim", r)
            curve_b = devices[dev_b].curve25519
            check(bool(a.olm.session_store.get(curve_b)), "olm session from the verified one-time key")

            r = await a.devices()
            check(isinstance(r, DevicesResponse), "devices list", r)
            check({d.id for d in r.devices} == {dev_a, dev_b}, "devices list content", [d.id for d in r.devices])
            r = await a.update_device(dev_b, {"display_name": "renamed phone"})
            check(isinstance(r, UpdateDeviceResponse), "rename device", r)
            r = await a.devices()
            names = {d.id: d.display_name for d in r.devices}
            check(names.get(dev_b) == "renamed phone", "rename visible", names)

            # Delete device B: first call returns the UIA flows, second one authenticates.
            r = await a.delete_devices([dev_b])
            check(isinstance(r, DeleteDevicesAuthResponse), "delete devices asks for UIA", r)
            check(any("m.login.password" in f.get("stages", []) for f in r.flows), "password flow offered", r.flows)
            auth = {"type": "m.login.password", "user": username, "password": password, "session": r.session}
            r = await a.delete_devices([dev_b], auth)
            check(isinstance(r, DeleteDevicesResponse), "delete devices with password", r)
            r = await b.whoami()
            check(isinstance(r, WhoamiError) and r.status_code == "M_UNKNOWN_TOKEN", "deleted device's token revoked", r)
            r = await a.devices()
            check([d.id for d in r.devices] == [dev_a], "only device A left", [d.id for d in r.devices])

            last_token = a.access_token
            r = await a.logout()
            check(isinstance(r, LogoutResponse), "logout", r)
        finally:
            await a.close()
            await b.close()
        # After logout, the old token is dead.
        probe = AsyncClient(base, username)
        probe.access_token = last_token
        probe.user_id = user_id
        try:
            r = await probe.whoami()
            check(isinstance(r, WhoamiError), "token dead after logout", r)
        finally:
            await probe.close()
    print("matrix-nio flow passed")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    asyncio.run(main(sys.argv[1].rstrip("/")))
