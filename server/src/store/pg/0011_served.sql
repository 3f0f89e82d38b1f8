-- Verify-on-write answers (server/src/store/logs.rs: ServedViews): the same rows as the redb
-- tables served, served_meta and served_due of tables.rs. A DID is due when its row in
-- served_due has due_at <= now; due_at 0 means "now" (answers dropped, or made with another
-- server key).

CREATE TABLE served_meta (
    did text COLLATE "C" PRIMARY KEY,
    head text NOT NULL,
    generation bigint NOT NULL,
    fresh_until bigint NOT NULL,
    due_at bigint NOT NULL,
    deactivated boolean NOT NULL
);

CREATE TABLE served (
    did text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (did, kind)
);

CREATE TABLE served_due (
    did text COLLATE "C" PRIMARY KEY,
    due_at bigint NOT NULL
);
CREATE INDEX served_due_order ON served_due (due_at, did);

-- Named settings of the store (the server key ID the stored answers were made with).
CREATE TABLE store_meta (
    name text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);
