-- The PostgreSQL layout of the homeserver store: the same rows as the redb tables
-- (server/src/store/tables.rs), one table each. Text keys use the "C" collation so that
-- ordering and ranges are byte order, as in redb. u64 values are stored as bigint.

CREATE TABLE counters (
    name text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO counters (name, value) VALUES ('key_stream', 0), ('op_export', 0);

CREATE TABLE server_key (
    id smallint PRIMARY KEY CHECK (id = 1),
    version text NOT NULL,
    seed bytea NOT NULL,
    created_at bigint NOT NULL
);

CREATE TABLE old_server_keys (
    version text COLLATE "C" PRIMARY KEY,
    public_key bytea NOT NULL,
    expired_ts bigint NOT NULL
);

CREATE TABLE accounts (
    user_id text COLLATE "C" PRIMARY KEY,
    password_hash text,
    created_at bigint NOT NULL
);

CREATE TABLE devices (
    user_id text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    display_name text,
    created_at bigint NOT NULL,
    token_hash bytea,
    refresh_hash bytea,
    last_seen_ip text,
    last_seen_ts bigint,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE access_tokens (
    hash bytea PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    expires_at bigint
);

CREATE TABLE refresh_tokens (
    hash bytea PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL
);

CREATE TABLE device_keys (
    user_id text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    keys text NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE one_time_keys (
    user_id text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    key_id text COLLATE "C" NOT NULL,
    key text NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);

CREATE TABLE fallback_keys (
    user_id text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    algorithm text COLLATE "C" NOT NULL,
    key_id text NOT NULL,
    key text NOT NULL,
    used boolean NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm)
);

CREATE TABLE cross_signing_keys (
    user_id text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL,
    key text NOT NULL,
    PRIMARY KEY (user_id, kind)
);

CREATE TABLE key_signatures (
    target_user text COLLATE "C" NOT NULL,
    target_key text COLLATE "C" NOT NULL,
    signer_user text COLLATE "C" NOT NULL,
    signer_key_id text COLLATE "C" NOT NULL,
    signature text NOT NULL,
    PRIMARY KEY (target_user, target_key, signer_user, signer_key_id)
);
CREATE INDEX key_signatures_signer ON key_signatures (signer_user);

CREATE TABLE key_changes (
    position bigint PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL
);

CREATE TABLE registration_tokens (
    hash text COLLATE "C" PRIMARY KEY,
    uses_allowed bigint,
    completed bigint NOT NULL,
    expiry_time bigint,
    created_at bigint NOT NULL
);

-- portable accounts

CREATE TABLE log_ops (
    did text COLLATE "C" NOT NULL,
    hash text COLLATE "C" NOT NULL,
    op text NOT NULL,
    PRIMARY KEY (did, hash)
);

CREATE TABLE log_heads (
    did text COLLATE "C" PRIMARY KEY,
    head text NOT NULL,
    seq bigint NOT NULL,
    servers text[] NOT NULL,
    user_ids text[] NOT NULL,
    deactivated boolean NOT NULL,
    updated_at bigint NOT NULL
);

CREATE TABLE user_dids (
    user_id text COLLATE "C" PRIMARY KEY,
    did text COLLATE "C" NOT NULL
);

CREATE TABLE attestations (
    did text COLLATE "C" PRIMARY KEY,
    attestations text NOT NULL
);

CREATE TABLE op_export (
    cursor bigint PRIMARY KEY,
    did text COLLATE "C" NOT NULL,
    hash text COLLATE "C" NOT NULL
);

CREATE TABLE fork_evidence (
    did text COLLATE "C" NOT NULL,
    hash text COLLATE "C" NOT NULL,
    op text NOT NULL,
    PRIMARY KEY (did, hash)
);

CREATE TABLE migrations (
    id text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);

CREATE TABLE migration_by_did (
    did text COLLATE "C" PRIMARY KEY,
    id text COLLATE "C" NOT NULL
);

CREATE TABLE op_windows (
    did text COLLATE "C" PRIMARY KEY,
    times bigint[] NOT NULL
);
