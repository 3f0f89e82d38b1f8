-- The device plane carried between servers (server/src/store/carry.rs) and the devices the
-- account key signed in, kept with a log's summary (JSON `device_id → [ed25519,
-- curve25519]`; NULL in summaries stored before it was kept).

ALTER TABLE log_heads ADD COLUMN devices text;

-- User IDs of other servers whose keys this server holds for an account it hosts.
CREATE TABLE carried_users (
    user_id text COLLATE "C" PRIMARY KEY,
    did text COLLATE "C" NOT NULL
);
