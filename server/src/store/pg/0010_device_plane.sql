-- The device plane (server/src/store/device_plane.rs, key_backup.rs): the same rows as the
-- redb tables of tables.rs. Numbered 0010 so that it never collides with later numbers of
-- the first series; JSON values are stored as text, as in 0001.

ALTER TABLE accounts ADD COLUMN deactivated boolean NOT NULL DEFAULT false;

-- To-device messages and account data share this stream; a /sync token names a position.
INSERT INTO counters (name, value) VALUES ('message_stream', 0);

CREATE TABLE to_device (
    user_id text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    position bigint NOT NULL,
    event text NOT NULL,
    PRIMARY KEY (user_id, device_id, position)
);

CREATE TABLE to_device_txns (
    sender text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    txn_id text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (sender, device_id, txn_id)
);

CREATE TABLE account_data (
    user_id text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL,
    position bigint NOT NULL,
    content text NOT NULL,
    PRIMARY KEY (user_id, kind)
);

CREATE TABLE filters (
    user_id text COLLATE "C" NOT NULL,
    filter_id text COLLATE "C" NOT NULL,
    filter text NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

CREATE TABLE profiles (
    user_id text COLLATE "C" PRIMARY KEY,
    displayname text,
    avatar_url text
);

CREATE TABLE tracked_users (
    user_id text COLLATE "C" NOT NULL,
    tracked text COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, tracked)
);

-- Deleted versions stay (deleted = true) so that a version number is never reused.
CREATE TABLE backup_versions (
    user_id text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    algorithm text NOT NULL,
    auth_data text NOT NULL,
    etag bigint NOT NULL,
    count bigint NOT NULL,
    deleted boolean NOT NULL,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE backup_keys (
    user_id text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    room_id text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    data text NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
