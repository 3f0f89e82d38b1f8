-- Short-lived state every node must see (UIA sessions, key-login challenges), so that
-- consecutive requests of one client may hit different nodes. Expired rows are deleted as
-- new ones are written.
CREATE TABLE shared_state (
    kind text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    value text NOT NULL,
    expires_at bigint NOT NULL,
    owner text COLLATE "C" NOT NULL,
    client text COLLATE "C" NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX shared_state_client ON shared_state (kind, client);
CREATE INDEX shared_state_expiry ON shared_state (expires_at);
