#!/usr/bin/env node
// matrix-js-sdk (with its Rust crypto, initRustCrypto) against a Roam server.
//
// Usage: node tests/js-sdk/flow.mjs BASE_URL     e.g. node flow.mjs http://127.0.0.1:8008
//
// Device 1 registers and logs in, bootstraps cross-signing (answering the UIA with the
// password) and secret storage with a new recovery key and a new key backup, then imports a
// room key (a real megolm session made with libolm, as another device of a room would send it)
// which its backup loop uploads. A new device (second login, fresh in-memory crypto store)
// opens secret storage with the recovery key only, imports the cross-signing keys from it
// (its own device becomes cross-signed), loads the backup key, restores the backup and holds
// the same room key. Device 1 then sees device 2 as cross-signed through /sync device lists.
// Every step is checked against what the SDK reports and against the server's own answers.
// Exits non-zero on the first failure, naming the step; prints "matrix-js-sdk flow passed".

import { createRequire } from "node:module";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";

import * as sdk from "matrix-js-sdk";
import { decodeRecoveryKey, CryptoEvent } from "matrix-js-sdk/lib/crypto-api/index.js";
import { logger } from "matrix-js-sdk/lib/logger.js";

const require = createRequire(import.meta.url);
const Olm = require("@matrix-org/olm");

// FLOW_TRACE=1 prints every HTTP request the SDK makes, with the status.
if (process.env.FLOW_TRACE) {
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    const res = await realFetch(url, init);
    process.stderr.write(`http: ${init?.method ?? "GET"} ${url} -> ${res.status}\n`);
    return res;
  };
}

// The SDK warns about each specified default push rule the server's /pushrules/ lacks.
const missingPushRules = [];
const realWarn = console.warn;
console.warn = (...args) => {
  const text = args.map(String).join(" ");
  if (text.includes("Missing default global")) missingPushRules.push(text);
  realWarn(...args);
};

// `node flow.mjs BASE_URL`: the whole flow on one server, for a new user.
// Around a migration, for an existing user (USER: localpart; STATE: a JSON file):
//   `node flow.mjs --before-migration BASE_URL USER PASSWORD STATE`: device 1 (cross-signing,
//     secret storage, a key backup with a room key in it); STATE gets what device 2 checks;
//   `node flow.mjs --after-migration BASE_URL USER PASSWORD STATE`: device 2 on the new server
//     opens secret storage with the recovery key, finds the same cross-signing identity and
//     restores the backup.
const [mode, args] = process.argv[2]?.startsWith("--")
  ? [process.argv[2], process.argv.slice(3)]
  : ["--whole", process.argv.slice(2)];
const base = args[0];
const wanted = mode === "--whole" ? 1 : 4;
if (!base || args.length !== wanted || !["--whole", "--before-migration", "--after-migration"].includes(mode)) {
  console.error("usage: node flow.mjs BASE_URL | node flow.mjs --before-migration|--after-migration BASE_URL USER PASSWORD STATE");
  process.exit(2);
}
// The SDK logs a lot at debug level; keep warnings and errors, which explain failures.
// The Rust crypto traces through console.debug/info; JS_SDK_LOG=debug shows it all.
logger.setLevel(process.env.JS_SDK_LOG ?? "warn");
if (!process.env.JS_SDK_LOG) {
  console.debug = () => {};
  console.info = () => {};
}

function check(ok, step, detail = "") {
  if (!ok) {
    const text = typeof detail === "string" ? detail : JSON.stringify(detail);
    throw new Error(`FAIL: ${step}: ${text}`);
  }
  console.log(`ok: ${step}`);
}

/** Raw HTTP against the server, to check what it stored independently of the SDK. */
async function api(method, path, token, body) {
  const res = await fetch(`${base}/_matrix/client/v3${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

async function waitFor(step, what, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await what();
    if (value) return value;
    if (Date.now() > deadline) check(false, step, "timed out");
    await new Promise((r) => setTimeout(r, 100));
  }
}

const username = mode === "--whole" ? `js${randomBytes(4).toString("hex")}` : args[1];
const password = mode === "--whole" ? `pw-${randomBytes(12).toString("hex")}` : args[2];

async function register() {
  const c = sdk.createClient({ baseUrl: base });
  let session;
  try {
    await c.registerRequest({ username, password, inhibit_login: true });
    check(false, "register asks for user-interactive auth");
  } catch (e) {
    check(e.httpStatus === 401 && e.data?.session, "register asks for UIA", e.data ?? String(e));
    session = e.data.session;
  }
  const r = await c.registerRequest({
    username,
    password,
    inhibit_login: true,
    auth: { type: "m.login.dummy", session },
  });
  check(r.user_id?.startsWith(`@${username}:`), "register", r);
  return r.user_id;
}

/** One device: log in, start the Rust crypto with a fresh in-memory store, start syncing. */
async function device(userId, name, secretKeys) {
  const anon = sdk.createClient({ baseUrl: base });
  const login = await anon.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: username },
    password,
    initial_device_display_name: name,
  });
  check(login.user_id === userId && login.device_id, `login ${name}`, login);
  // Watches the SDK's /keys/query requests (see `settled`).
  const queries = { inFlight: 0, lastActivity: 0 };
  const fetchFn = async (url, init) => {
    const isQuery = String(url).includes("/keys/query");
    if (isQuery) {
      queries.inFlight += 1;
      queries.lastActivity = Date.now();
    }
    try {
      return await fetch(url, init);
    } finally {
      if (isQuery) {
        queries.inFlight -= 1;
        queries.lastActivity = Date.now();
      }
    }
  };
  const client = sdk.createClient({
    baseUrl: base,
    fetchFn,
    userId,
    deviceId: login.device_id,
    accessToken: login.access_token,
    cryptoCallbacks: {
      // Secret storage keys this device holds: the one it created, or the recovery key typed in.
      getSecretStorageKey: async ({ keys }) => {
        for (const keyId of Object.keys(keys)) {
          if (secretKeys.has(keyId)) return [keyId, secretKeys.get(keyId)];
        }
        if (secretKeys.has("*recovery*")) return [Object.keys(keys)[0], secretKeys.get("*recovery*")];
        return null;
      },
      cacheSecretStorageKey: (keyId, _info, key) => secretKeys.set(keyId, key),
    },
  });
  await client.initRustCrypto({ useIndexedDB: false });
  const prepared = new Promise((resolve, reject) => {
    client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
      if (state === "PREPARED" || state === "SYNCING") resolve();
      if (state === "ERROR") reject(new Error(`sync error: ${data?.error}`));
    });
  });
  await client.startClient({ initialSyncLimit: 1 });
  await prepared;
  check(true, `${name}: Rust crypto ${client.getCrypto().getVersion()} started and first /sync done`);
  return { client, crypto: client.getCrypto(), token: login.access_token, deviceId: login.device_id, queries };
}

/**
 * Waits until the device has caught up with its own cross-signing upload: its device shows
 * as cross-signed (so a /keys/query made after the signature upload has been handled), and
 * no /keys/query has been in flight for a second. matrix-sdk-crypto drops its private
 * cross-signing keys when a /keys/query answer made before a reset arrives after it
 * ("Removed some or all of our private cross signing keys"), whatever the server; a user
 * resetting twice within milliseconds hits that race in the client, so the test, like a
 * person, lets the client settle first.
 */
async function settled(step, d, userId) {
  await waitFor(`${step}: own device cross-signed`, async () =>
    (await d.crypto.getDeviceVerificationStatus(userId, d.deviceId))?.crossSigningVerified,
  );
  await waitFor(`${step}: no /keys/query in flight`, () =>
    d.queries.inFlight === 0 && Date.now() - d.queries.lastActivity > 1000,
  );
  check(true, `${step}: the client has caught up with its upload`);
}

/**
 * UIA for the cross-signing upload, as a client does it: try without auth; when the server
 * answers 401 with flows and a session, answer with the password. `asked` counts the 401s.
 */
function passwordAuth(userId, asked) {
  return async (makeRequest) => {
    try {
      await makeRequest(null);
      return;
    } catch (e) {
      if (e.httpStatus !== 401 || !e.data?.flows) throw e;
      check(
        e.data.flows.some((f) => f.stages.includes("m.login.password")) && e.data.session,
        "signing-key upload asks for UIA, offering m.login.password",
        e.data,
      );
      asked.count += 1;
      await makeRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: userId },
        password,
        session: e.data.session,
      });
    }
  };
}

/** A real megolm session from another (imagined) device, as a key export entry. */
async function makeRoomKey() {
  await Olm.init();
  const account = new Olm.Account();
  account.create();
  const identity = JSON.parse(account.identity_keys());
  const outbound = new Olm.OutboundGroupSession();
  outbound.create();
  const inbound = new Olm.InboundGroupSession();
  inbound.create(outbound.session_key());
  const key = {
    algorithm: "m.megolm.v1.aes-sha2",
    room_id: "!backup-test:roam.test",
    sender_key: identity.curve25519,
    sender_claimed_keys: { ed25519: identity.ed25519 },
    session_id: inbound.session_id(),
    session_key: inbound.export_session(0),
    forwarding_curve25519_key_chain: [],
  };
  const plaintext = outbound.encrypt(JSON.stringify({ type: "m.room.message", content: { body: "hi" } }));
  const check_ = inbound.decrypt(plaintext);
  for (const o of [account, outbound, inbound]) o.free();
  return { key, ciphertext: plaintext, decrypted: check_.plaintext };
}

async function deviceOne(userId) {
  const secretKeys = new Map();
  const d1 = await device(userId, "js-sdk laptop", secretKeys);
  const { crypto } = d1;
  check(!(await crypto.isCrossSigningReady()), "device 1: cross-signing not ready before bootstrap");

  // The first upload of cross-signing keys needs no UIA (spec/api.md, as other homeservers).
  const asked = { count: 0 };
  await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(userId, asked) });
  check(await crypto.isCrossSigningReady() && asked.count === 0, "device 1: bootstrapCrossSigning (first upload)", asked);
  const first = await crypto.getCrossSigningKeyId();
  await settled("device 1", d1, userId);
  // Replacing them does: the SDK's callback answers the 401 with the password.
  await crypto.bootstrapCrossSigning({
    setupNewCrossSigning: true,
    authUploadDeviceSigningKeys: passwordAuth(userId, asked),
  });
  check(asked.count === 1, "device 1: bootstrapCrossSigning with new keys (UIA answered with the password)", asked);
  // The SDK may hold a /keys/query answer from before the upload; the upload is a device-list
  // change, so /sync makes it query again and the new keys become the trusted identity.
  await waitFor("device 1: cross-signing ready", () => crypto.isCrossSigningReady());
  check(true, "device 1: cross-signing ready with the new keys");
  const master = await crypto.getCrossSigningKeyId();
  check(master && master !== first, "device 1: has a new master cross-signing key", { first, master });
  // The device's signature by the new self-signing key is a device-list change too: the SDK
  // sees it once /sync has made it query the keys again.
  await waitFor("device 1: own device cross-signed", async () =>
    (await crypto.getDeviceVerificationStatus(userId, d1.deviceId))?.crossSigningVerified,
  );
  check(true, "device 1: own device cross-signed by the new self-signing key");

  let recovery;
  await crypto.bootstrapSecretStorage({
    createSecretStorageKey: async () => {
      recovery = await crypto.createRecoveryKeyFromPassphrase();
      return recovery;
    },
    setupNewSecretStorage: true,
    setupNewKeyBackup: true,
  });
  check(recovery?.encodedPrivateKey, "device 1: bootstrapSecretStorage created a recovery key");
  check(await crypto.isSecretStorageReady(), "device 1: secret storage ready");

  // bootstrapSecretStorage starts the backup check without awaiting it; wait for it as a
  // client does before showing the backup's state.
  const enabled = await crypto.checkKeyBackupAndEnable();
  check(enabled?.trustInfo?.trusted, "device 1: checkKeyBackupAndEnable finds a trusted backup", enabled);
  const info = await crypto.getKeyBackupInfo();
  check(info?.version && info.algorithm === "m.megolm_backup.v1.curve25519-aes-sha2", "device 1: key backup exists", info);
  const active = await waitFor("device 1: key backup enabled", () => crypto.getActiveSessionBackupVersion());
  check(active === info.version, "device 1: key backup enabled on this device", active);
  const trust = await crypto.isKeyBackupTrusted(info);
  check(trust.trusted && trust.matchesDecryptionKey, "device 1: backup trusted and matches its key", trust);

  // What the server stored, read without the SDK.
  const server = await api("GET", "/room_keys/version", d1.token);
  check(server.status === 200 && server.body.version === info.version, "server: latest backup version", server);
  const defaultKey = await api("GET", `/user/${encodeURIComponent(userId)}/account_data/m.secret_storage.default_key`, d1.token);
  check(defaultKey.status === 200 && defaultKey.body.key, "server: m.secret_storage.default_key stored", defaultKey);
  for (const type of ["m.cross_signing.master", "m.cross_signing.self_signing", "m.cross_signing.user_signing", "m.megolm_backup.v1"]) {
    const r = await api("GET", `/user/${encodeURIComponent(userId)}/account_data/${type}`, d1.token);
    check(r.status === 200 && r.body.encrypted?.[defaultKey.body.key], `server: ${type} encrypted in secret storage`, r);
  }

  // A room key arrives (here: imported, since there are no rooms); the backup loop uploads it.
  const room = await makeRoomKey();
  check(room.decrypted.includes('"hi"'), "libolm: made a megolm session");
  await crypto.importRoomKeys([room.key]);
  const exported = await crypto.exportRoomKeys();
  check(exported.some((k) => k.session_id === room.key.session_id), "device 1: room key imported", exported.length);
  const backedUp = await waitFor("device 1: room key uploaded to the backup", async () => {
    const r = await api("GET", `/room_keys/keys?version=${info.version}`, d1.token);
    const sessions = r.body.rooms?.[room.key.room_id]?.sessions ?? {};
    return sessions[room.key.session_id] ? r.body : null;
  });
  const stored = backedUp.rooms[room.key.room_id].sessions[room.key.session_id];
  check(stored.session_data?.ciphertext && stored.session_data?.ephemeral, "server: session stored encrypted", stored);
  const version = await api("GET", `/room_keys/version/${info.version}`, d1.token);
  check(version.body.count === 1 && version.body.etag, "server: backup count 1 with an etag", version.body);
  return { d1, master, recovery, version: info.version, room };
}

async function deviceTwo(userId, one) {
  const secretKeys = new Map([["*recovery*", decodeRecoveryKey(one.recovery.encodedPrivateKey)]]);
  const d2 = await device(userId, "js-sdk phone", secretKeys);
  const { crypto } = d2;
  check(d2.deviceId !== one.d1.deviceId, "device 2 is a new device");
  check(await crypto.userHasCrossSigningKeys(userId, true), "device 2: sees the user's cross-signing keys");
  const before = await crypto.getDeviceVerificationStatus(userId, d2.deviceId);
  check(!before?.crossSigningVerified, "device 2: not cross-signed before opening secret storage", before);
  const fresh = await crypto.getCrossSigningStatus();
  check(
    !fresh.privateKeysCachedLocally.masterKey && fresh.privateKeysInSecretStorage,
    "device 2: no private cross-signing keys yet; they are in secret storage",
    fresh,
  );

  // Cross-signing keys come out of secret storage (opened with the recovery key); device 2 signs itself.
  const asked = { count: 0 };
  await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(userId, asked) });
  check(asked.count === 0, "device 2: no new cross-signing keys uploaded", asked);
  check(await crypto.isCrossSigningReady(), "device 2: cross-signing ready from secret storage");
  const master = await crypto.getCrossSigningKeyId();
  check(master === one.master, "device 2: same master key as device 1", { master, expected: one.master });
  const status = await crypto.getCrossSigningStatus();
  check(
    status.publicKeysOnDevice && status.privateKeysInSecretStorage &&
      status.privateKeysCachedLocally.masterKey && status.privateKeysCachedLocally.selfSigningKey &&
      status.privateKeysCachedLocally.userSigningKey,
    "device 2: all cross-signing private keys cached from secret storage",
    status,
  );
  // The signature upload is a device-list change of the user: /sync says so, the SDK queries
  // the keys again and sees its device signed by the self-signing key.
  await waitFor("device 2: own device cross-signed", async () => {
    const s = await crypto.getDeviceVerificationStatus(userId, d2.deviceId);
    return s?.crossSigningVerified;
  });
  check(true, "device 2: own device now cross-signed (signature seen through /sync device_lists)");
  const user = await crypto.getUserVerificationStatus(userId);
  check(user.isCrossSigningVerified(), "device 2: trusts its own user identity");

  // Key backup: the backup key from secret storage, then restore.
  await crypto.loadSessionBackupPrivateKeyFromSecretStorage();
  check(await crypto.getSessionBackupPrivateKey(), "device 2: backup key loaded from secret storage");
  const backupCheck = await crypto.checkKeyBackupAndEnable();
  check(backupCheck?.backupInfo?.version === one.version && backupCheck.trustInfo.trusted, "device 2: backup found and trusted", backupCheck);
  check(await crypto.getActiveSessionBackupVersion() === one.version, "device 2: key backup enabled on this device");
  check(!(await crypto.exportRoomKeys()).some((k) => k.session_id === one.room.key.session_id), "device 2: room key not there before restore");
  const restored = await crypto.restoreKeyBackup();
  check(restored.total === 1 && restored.imported === 1, "device 2: restoreKeyBackup imported the room key", restored);
  const keys = await crypto.exportRoomKeys();
  const key = keys.find((k) => k.session_id === one.room.key.session_id);
  check(
    key && key.room_id === one.room.key.room_id && key.sender_key === one.room.key.sender_key &&
      key.session_key === one.room.key.session_key,
    "device 2: restored room key equals the one device 1 backed up",
    key,
  );
  return d2;
}

/**
 * The user ID the server gives `username` (the account exists: made by the caller), and,
 * with `look`, what `look(token)` finds in a short password session.
 */
async function existingUser(look = async () => null) {
  const c = sdk.createClient({ baseUrl: base });
  const login = await c.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: username },
    password,
    initial_device_display_name: "js-sdk probe",
  });
  check(login.user_id?.startsWith(`@${username}:`), `password login to ${base}`, login);
  const found = await look(login.access_token);
  await api("POST", "/logout", login.access_token, {});
  return { userId: login.user_id, found };
}

async function beforeMigration() {
  const { userId } = await existingUser();
  const one = await deviceOne(userId);
  const state = {
    userId,
    deviceId: one.d1.deviceId,
    master: one.master,
    recovery: { encodedPrivateKey: one.recovery.encodedPrivateKey },
    version: one.version,
    room: { key: one.room.key },
  };
  writeFileSync(args[3], JSON.stringify(state));
  one.d1.client.stopClient();
  console.log("matrix-js-sdk before-migration flow passed");
}

async function afterMigration() {
  const before = JSON.parse(readFileSync(args[3], "utf8"));
  // The new server numbers backup versions itself; the carried backup is the latest there.
  const { userId, found: latest } = await existingUser((token) => api("GET", "/room_keys/version", token));
  check(userId !== before.userId, "after the migration: a new user ID", { before: before.userId, userId });
  check(latest.status === 200 && latest.body.count === 1, "after the migration: the backup is on the new server", latest);
  const d2 = await deviceTwo(userId, { ...before, version: latest.body.version, d1: { deviceId: before.deviceId } });
  d2.client.stopClient();
  console.log("matrix-js-sdk after-migration flow passed");
}

async function main() {
  // A hung request must fail the test, not hang it.
  setTimeout(() => {
    console.error("FAIL: the flow did not finish within 5 minutes");
    process.exit(1);
  }, 300_000).unref();
  if (mode === "--before-migration") return beforeMigration();
  if (mode === "--after-migration") return afterMigration();
  const userId = await register();
  const one = await deviceOne(userId);
  const d2 = await deviceTwo(userId, one);

  // Device 1 learns through /sync device lists that device 2 is now cross-signed.
  const crypto1 = one.d1.crypto;
  await waitFor("device 1: sees device 2 cross-signed", async () => {
    const s = await crypto1.getDeviceVerificationStatus(userId, d2.deviceId);
    return s?.crossSigningVerified;
  });
  check(true, "device 1: sees device 2 cross-signed (device_lists through /sync)");

  check(missingPushRules.length === 0, "/pushrules/ has every default rule the SDK expects", missingPushRules);
  for (const d of [one.d1, d2]) d.client.stopClient();
  console.log("matrix-js-sdk flow passed");
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e?.stack ?? String(e));
    if (e?.data) console.error(JSON.stringify(e.data));
    process.exit(1);
  },
);
