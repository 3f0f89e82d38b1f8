#!/usr/bin/env python3
"""Secret storage and key backup with mautrix-python, on two devices of one user, over Roam.

Usage: test_secrets_backup.py BASE_URL     e.g. test_secrets_backup.py http://127.0.0.1:8008

Device A (mautrix's OlmMachine, a fresh in-memory crypto store):
  upload device and one-time keys -> bootstrap secret storage with a passphrase
  (`generate_recovery_key`: an SSSS key in `m.secret_storage.key.*`, the cross-signing private
  keys encrypted into `m.cross_signing.*`, the default key in `m.secret_storage.default_key`,
  the cross-signing keys published and the device signed) -> create a key backup version
  (`m.megolm_backup.v1.curve25519-aes-sha2`, auth_data signed by the device and the master
  key) -> store the backup's private key in secret storage (`m.megolm_backup.v1`) -> create
  three megolm sessions in two (room-less) room IDs and encrypt a message with each ->
  upload their keys to the backup at all three scopes (all, room, session); a worse copy of a
  key (ratcheted past its first message) does not replace the better one.
Device B (a second login, a fresh crypto store):
  open secret storage with the passphrase (and check the recovery key opens the same key) ->
  `verify_with_recovery_key` (imports the cross-signing keys from secret storage and signs
  device B) -> fetch the backup key from secret storage -> restore the backup at each scope ->
  the restored session keys are the uploaded ones, and mautrix's own megolm decryption reads
  A's messages with them.

mautrix-python 0.21 has secret storage and cross-signing, but no key backup: the
`/room_keys` calls go through mautrix's client API (`client.api.request`), and the backup
encryption is done with the olm primitives mautrix itself uses (`olm.PkEncryption`,
`olm.PkDecryption`). mautrix has no registration helper either, so `/register` is one raw
`client.api.request` too. Exits non-zero on the first failure, naming the step.
"""

import asyncio
import json
import secrets
import sys

import olm
from _libolm import ffi, lib  # python-olm's CFFI module, as olm/pk.py imports it
from mautrix.api import Method, Path
from mautrix.client import Client
from mautrix.client.state_store import MemoryStateStore, MemorySyncStore
from mautrix.crypto import InboundGroupSession, MemoryCryptoStore, OlmMachine
from mautrix.crypto.signature import sign_olm, verify_signature_json
from mautrix.crypto.store import StateStore as CryptoStateStore
from mautrix.errors import MatrixRequestError
from mautrix.types import EncryptedEvent, EventType, KeyID, SessionID, TrustState

BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM_1 = "!backup-one:roam.test"
ROOM_2 = "!backup-two:roam.test"


def check(ok, step, detail=""):
    if not ok:
        print(f"FAIL: {step}: {detail}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {step}")


class NoRooms(CryptoStateStore):
    """The crypto state store: a Roam server has no rooms, so nothing is encrypted room state."""

    async def is_encrypted(self, room_id):
        return False

    async def get_encryption_info(self, room_id):
        return None

    async def find_shared_rooms(self, user_id):
        return []


class Device:
    """One login of the user: a mautrix Client with its own OlmMachine and crypto store."""

    def __init__(self, base, name):
        self.name = name
        self.client = Client(
            base_url=base, state_store=MemoryStateStore(), sync_store=MemorySyncStore()
        )
        self.machine = None

    async def login(self, user, password):
        r = await self.client.login(identifier=user, password=password, device_name=self.name)
        check(r.device_id, f"login {self.name}", r)
        store = MemoryCryptoStore(account_id=r.user_id, pickle_key=secrets.token_hex(16))
        self.machine = OlmMachine(self.client, store, NoRooms())
        await self.machine.load()
        self.client.crypto = self.machine
        await self.machine.share_keys()
        check(self.machine.account.shared, f"{self.name}: device and one-time keys uploaded")

    async def sync(self, since=None, timeout=0):
        return await self.client.sync(since=since, timeout=timeout)

    async def room_keys(self, method, segments, content=None, version=None):
        """One `/room_keys/...` call through mautrix's client API (each segment URL-quoted)."""
        path = Path.v3.room_keys
        for segment in segments:
            path = path[segment]
        query = {"version": version} if version is not None else None
        return await self.client.api.request(method, path, content, query_params=query)


async def register(base, username, password):
    """Registration through the dummy UIA stage (mautrix has no register helper)."""
    api = Client(base_url=base).api
    body = {"username": username, "password": password, "inhibit_login": True}
    session = None
    try:
        try:
            await api.request(Method.POST, Path.v3.register, body)
        except MatrixRequestError as e:
            check(e.http_status == 401, "register: UIA 401", e)
            session = json.loads(getattr(e, "text", "{}")).get("session")
        check(session, "register: the UIA 401 carries a session")
        body["auth"] = {"type": "m.login.dummy", "session": session}
        r = await api.request(Method.POST, Path.v3.register, body)
    finally:
        await api.session.close()
    check(r.get("user_id", "").startswith(f"@{username}:"), "register", r)
    return r["user_id"]


def backup_key(private_key):
    """The backup's Curve25519 key pair from its private key, with python-olm's own call.

    python-olm's PkDecryption only generates a random key; restoring one from a stored private
    key (what every client does with the secret `m.megolm_backup.v1`) is the same libolm call
    its constructor makes, `olm_pk_key_from_private`, with the given bytes.
    """
    pk = olm.PkDecryption.__new__(olm.PkDecryption)
    key_length = lib.olm_pk_key_length()
    public = ffi.new("char[]", key_length)
    private = ffi.new("char[]", bytes(private_key))
    pk._check_error(
        lib.olm_pk_key_from_private(
            pk._pk_decryption, public, key_length, private, len(private_key)
        )
    )
    pk.public_key = ffi.unpack(public, key_length).decode()
    return pk


def session_data(session):
    """The backed-up key of one inbound megolm session (`BackedUpSessionData`)."""
    return {
        "algorithm": "m.megolm.v1.aes-sha2",
        "forwarding_curve25519_key_chain": list(session.forwarding_chain),
        "sender_key": session.sender_key,
        "sender_claimed_keys": {"ed25519": session.signing_key},
        "session_key": session.export_session(session.first_known_index),
    }


def encrypt_for_backup(public_key, data):
    m = olm.PkEncryption(public_key).encrypt(json.dumps(data))
    return {"ephemeral": m.ephemeral_key, "ciphertext": m.ciphertext, "mac": m.mac}


def key_backup_data(session):
    return {
        "first_message_index": session.first_known_index,
        "forwarded_count": len(session.forwarding_chain),
        "is_verified": True,
        "session_data": None,
    }


async def bootstrap_secret_storage(a, passphrase):
    """Device A: secret storage with a passphrase, cross-signing keys in it."""
    recovery_key = await a.machine.generate_recovery_key(passphrase=passphrase)
    check(len(recovery_key.replace(" ", "")) > 40, "A: recovery key", recovery_key)
    key_id = await a.machine.ssss.get_default_key_id()
    check(key_id, "A: m.secret_storage.default_key set", key_id)
    meta = await a.client.get_account_data(f"m.secret_storage.key.{key_id}")
    check(
        meta.get("algorithm") == "m.secret_storage.v1.aes-hmac-sha2"
        and meta.get("passphrase", {}).get("algorithm") == "m.pbkdf2",
        "A: m.secret_storage.key.* holds the key description with its passphrase",
        meta,
    )
    for t in ("m.cross_signing.master", "m.cross_signing.self_signing"):
        stored = await a.client.get_account_data(t)
        check(
            set(stored.get("encrypted", {})) == {key_id}
            and "ciphertext" in stored["encrypted"][key_id],
            f"A: {t} stored encrypted under the default key",
            stored,
        )
    key_id, meta = await a.machine.ssss.get_default_key_data()
    return recovery_key, meta.verify_recovery_key(key_id, recovery_key)


async def create_backup(a, ssss_key):
    """Device A: a backup version whose private key goes into secret storage."""
    try:
        await a.room_keys(Method.GET, ["version"])
        check(False, "A: no backup version yet")
    except MatrixRequestError as e:
        check(
            e.http_status == 404 and e.errcode == "M_NOT_FOUND",
            "A: no backup version yet is M_NOT_FOUND",
            (e.http_status, e.errcode),
        )
    private_key = secrets.token_bytes(32)
    pk = backup_key(private_key)
    auth_data = {"public_key": pk.public_key}
    master = a.machine._cross_signing_private_keys.master_key
    auth_data["signatures"] = {
        a.client.mxid: {
            str(KeyID.ed25519(a.client.device_id)): sign_olm(auth_data, a.machine.account),
            str(KeyID.ed25519(master.public_key)): sign_olm(auth_data, master),
        }
    }
    body = {"algorithm": BACKUP_ALGORITHM, "auth_data": auth_data}
    r = await a.room_keys(Method.POST, ["version"], body)
    version = r.get("version")
    check(isinstance(version, str) and version, "A: backup version created", r)
    await a.machine.ssss.set_encrypted_account_data(
        EventType.MEGOLM_BACKUP_V1, private_key, ssss_key
    )
    stored = await a.client.get_account_data(EventType.MEGOLM_BACKUP_V1)
    stored_under = set(stored.get("encrypted", {}))
    check(ssss_key.id in stored_under, "A: m.megolm_backup.v1 in secret storage", stored)
    return version, pk.public_key


async def megolm_sessions(a):
    """Device A: three outbound megolm sessions (two in ROOM_1, one in ROOM_2), created and
    stored by mautrix as for a room, each encrypting one message."""
    sessions, messages = [], []
    for n, room in enumerate((ROOM_1, ROOM_1, ROOM_2)):
        outbound = await a.machine._new_outbound_group_session(room)
        outbound.shared = True
        await a.machine.crypto_store.add_outbound_group_session(outbound)
        content = await a.machine.encrypt_megolm_event(
            room, EventType.ROOM_MESSAGE, {"msgtype": "m.text", "body": f"secret {n}"}
        )
        await a.machine.crypto_store.remove_outbound_group_session(room)
        inbound = await a.machine.crypto_store.get_group_session(room, SessionID(outbound.id))
        check(inbound is not None, f"A: megolm session {n} stored by mautrix")
        sessions.append(inbound)
        messages.append((room, f"secret {n}", content))
    return sessions, messages


async def upload_backup(a, version, public_key, sessions):
    """Device A: session 0 at the all-rooms scope, 1 at the room scope, 2 at session scope."""
    def entry(s):
        d = key_backup_data(s)
        d["session_data"] = encrypt_for_backup(public_key, session_data(s))
        return d

    s0, s1, s2 = sessions
    r = await a.room_keys(
        Method.PUT, ["keys"], {"rooms": {ROOM_1: {"sessions": {s0.id: entry(s0)}}}}, version
    )
    check(r.get("count") == 1 and r.get("etag"), "A: upload at the all-rooms scope", r)
    body = {"sessions": {s1.id: entry(s1)}}
    r = await a.room_keys(Method.PUT, ["keys", ROOM_1], body, version)
    check(r.get("count") == 2, "A: upload at the room scope", r)
    r = await a.room_keys(Method.PUT, ["keys", ROOM_2, s2.id], entry(s2), version)
    check(r.get("count") == 3, "A: upload at the session scope", r)
    # A worse copy of session 2 (ratcheted past message 0) does not replace the better one:
    # B can only read message 0 if the server kept the key from index 0.
    worse = s2.ratchet_to(1)
    check(worse.first_known_index == 1, "A: session 2 ratcheted to index 1")
    r = await a.room_keys(Method.PUT, ["keys", ROOM_2, s2.id], entry(worse), version)
    check(r.get("count") == 3, "A: a worse key for a backed-up session adds nothing", r)
    try:
        await a.room_keys(Method.PUT, ["keys", ROOM_2, s2.id], entry(s2), str(int(version) + 7))
        check(False, "A: upload to a version that is not current is refused")
    except MatrixRequestError as e:
        check(
            e.http_status == 403 and e.errcode == "M_WRONG_ROOM_KEYS_VERSION",
            "A: upload to a wrong version is M_WRONG_ROOM_KEYS_VERSION",
            (e.http_status, e.errcode),
        )
    return {s.id: s.export_session(s.first_known_index) for s in sessions}


async def open_secret_storage(b, passphrase, recovery_key):
    """Device B: the SSSS key from the passphrase, checked against the recovery key."""
    r = await b.sync()
    types = {e["type"] for e in r.get("account_data", {}).get("events", [])}
    wanted = {"m.secret_storage.default_key", "m.cross_signing.master", "m.megolm_backup.v1"}
    check(wanted <= types, "B: first /sync carries the secret-storage account data", types)
    key_id, meta = await b.machine.ssss.get_default_key_data()
    from_passphrase = meta.verify_passphrase(key_id, passphrase)
    from_recovery = meta.verify_recovery_key(key_id, recovery_key)
    check(from_passphrase.key == from_recovery.key, "B: passphrase and recovery key open one key")
    try:
        meta.verify_passphrase(key_id, passphrase + "!")
        check(False, "B: a wrong passphrase is refused")
    except ValueError:
        print("ok: B: a wrong passphrase is refused")
    return from_passphrase


async def restore_cross_signing(a, b, recovery_key):
    """Device B imports the cross-signing keys from secret storage and signs itself."""
    since = (await a.sync())["next_batch"]
    await b.machine.verify_with_recovery_key(recovery_key)
    check(
        b.machine._cross_signing_public_keys == a.machine._cross_signing_public_keys,
        "B: cross-signing keys from secret storage are A's",
    )
    user = b.client.mxid
    r = await b.client.query_keys([user])
    ssk = a.machine._cross_signing_public_keys.self_signing_key
    device = r.device_keys[user][b.client.device_id]
    check(
        KeyID.ed25519(ssk) in device.signatures.get(user, {}),
        "B: its device is signed by the self-signing key from secret storage",
        device.signatures,
    )
    r = await a.sync(since=since, timeout=5000)
    check(user in r.get("device_lists", {}).get("changed", []), "A: /sync sees B's new signature")


async def fetch_backup_key(b, ssss_key, version):
    latest = await b.room_keys(Method.GET, ["version"])
    check(
        latest["version"] == version and latest["algorithm"] == BACKUP_ALGORITHM,
        "B: latest backup version is A's",
        latest,
    )
    check(latest["count"] == 3 and latest.get("etag"), "B: backup holds three keys", latest)
    auth = latest["auth_data"]
    master = b.machine._cross_signing_public_keys.master_key
    check(
        verify_signature_json(auth, b.client.mxid, master, master),
        "B: backup auth_data is signed by the master key",
    )
    private_key = await b.machine.ssss.get_decrypted_account_data(
        EventType.MEGOLM_BACKUP_V1, ssss_key
    )
    pk = backup_key(private_key)
    check(pk.public_key == auth["public_key"], "B: backup key from secret storage matches")
    return pk


async def import_keys(b, pk, room, sessions, restored):
    for session_id, d in sessions.items():
        e = d["session_data"]
        plain = json.loads(pk.decrypt(olm.PkMessage(e["ephemeral"], e["mac"], e["ciphertext"])))
        s = InboundGroupSession.import_session(
            plain["session_key"],
            signing_key=plain["sender_claimed_keys"]["ed25519"],
            sender_key=plain["sender_key"],
            room_id=room,
            forwarding_chain=plain["forwarding_curve25519_key_chain"],
        )
        check(s.id == session_id, f"B: restored session {session_id[:8]} has its ID")
        await b.machine.crypto_store.put_group_session(room, s.sender_key, s.id, s)
        restored[session_id] = s.export_session(s.first_known_index)


async def restore_backup(b, pk, version, exported, sessions):
    """Device B restores the backup at each scope and compares with what A uploaded."""
    s0, s1, s2 = sessions
    everything = await b.room_keys(Method.GET, ["keys"], version=version)
    rooms = everything.get("rooms", {})
    check(
        set(rooms) == {ROOM_1, ROOM_2}
        and set(rooms[ROOM_1]["sessions"]) == {s0.id, s1.id}
        and set(rooms[ROOM_2]["sessions"]) == {s2.id},
        "B: all-rooms scope lists the three sessions",
        rooms,
    )
    room = await b.room_keys(Method.GET, ["keys", ROOM_1], version=version)
    check(room == rooms[ROOM_1], "B: room scope answers that room's sessions", room)
    one = await b.room_keys(Method.GET, ["keys", ROOM_2, s2.id], version=version)
    check(one == rooms[ROOM_2]["sessions"][s2.id], "B: session scope answers that session", one)
    restored = {}
    await import_keys(b, pk, ROOM_1, room["sessions"], restored)
    await import_keys(b, pk, ROOM_2, {s2.id: one}, restored)
    check(restored == exported, "B: restored session keys equal the uploaded ones")


async def decrypt_on_b(b, user, messages):
    for n, (room, body, content) in enumerate(messages):
        evt = EncryptedEvent.deserialize(
            {
                "type": "m.room.encrypted",
                "room_id": room,
                "event_id": f"$backup{n}",
                "sender": user,
                "origin_server_ts": 1,
                "content": content.serialize(),
            }
        )
        decrypted = await b.machine.decrypt_megolm_event(evt)
        check(decrypted.content.body == body, f"B: decrypts A's message {n} with the backup key")
        # The sender is device A, signed by the self-signing key that the master key signs:
        # mautrix reads that from `/keys/query` (keys and signatures as Roam stored them).
        trust = decrypted["mautrix"]["trust_state"]
        check(
            trust == TrustState.CROSS_SIGNED_TOFU,
            f"B: message {n} comes from a cross-signed device",
            trust,
        )


async def main(base):
    username = "mx" + secrets.token_hex(4)
    password = secrets.token_urlsafe(16)
    passphrase = "correct horse " + secrets.token_hex(4)
    a, b = Device(base, "mautrix laptop"), Device(base, "mautrix phone")
    try:
        user = await register(base, username, password)
        await a.login(user, password)
        recovery_key, ssss_key = await bootstrap_secret_storage(a, passphrase)
        version, public_key = await create_backup(a, ssss_key)
        sessions, messages = await megolm_sessions(a)
        exported = await upload_backup(a, version, public_key, sessions)

        await b.login(user, password)
        check(b.client.device_id != a.client.device_id, "B is a second device")
        b_ssss_key = await open_secret_storage(b, passphrase, recovery_key)
        await restore_cross_signing(a, b, recovery_key)
        pk = await fetch_backup_key(b, b_ssss_key, version)
        await restore_backup(b, pk, version, exported, sessions)
        await decrypt_on_b(b, user, messages)
    finally:
        for d in (a, b):
            await d.client.api.session.close()
    print("mautrix secret storage and key backup passed")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    asyncio.run(main(sys.argv[1]))
