-- State of the rate limits every node counts against (server/src/ratelimit.rs): one token
-- bucket per (limiter, key), timed by the database clock so that nodes with skewed clocks
-- agree. UNLOGGED: a bucket is worth no WAL write (a crash of the database or a fail-over to
-- a replica starts every bucket full again, as a restart of one node does). A row whose
-- bucket is full again (full_at) says nothing a missing row does not, so it may be deleted.
CREATE UNLOGGED TABLE rate_buckets (
    limiter text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    tokens double precision NOT NULL,
    updated_at bigint NOT NULL,
    full_at bigint NOT NULL,
    PRIMARY KEY (limiter, key)
);
CREATE INDEX rate_buckets_full ON rate_buckets (full_at);

-- Takes one token from a bucket of `burst` tokens refilled at `per_second` (> 0): returns 0
-- when taken, otherwise the milliseconds until one is available. The row lock serializes
-- the nodes taking from one bucket.
CREATE FUNCTION roam_take_token(p_limiter text, p_key text, p_rate float8, p_burst float8)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    now_ms bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    b rate_buckets%ROWTYPE;
    r float8;
    wait bigint := 0;
BEGIN
    INSERT INTO rate_buckets (limiter, key, tokens, updated_at, full_at)
        VALUES (p_limiter, p_key, p_burst, now_ms, now_ms) ON CONFLICT DO NOTHING;
    SELECT * INTO b FROM rate_buckets WHERE limiter = p_limiter AND key = p_key FOR UPDATE;
    r := LEAST(p_burst, b.tokens + GREATEST(now_ms - b.updated_at, 0) * p_rate / 1000.0);
    IF r >= 1 THEN
        r := r - 1;
    ELSE
        wait := GREATEST(1, LEAST(86400000, ceil((1 - r) / p_rate * 1000)))::bigint;
    END IF;
    UPDATE rate_buckets SET tokens = r, updated_at = GREATEST(b.updated_at, now_ms),
        full_at = now_ms + LEAST(ceil((p_burst - r) / p_rate * 1000), 86400000)::bigint
        WHERE limiter = p_limiter AND key = p_key;
    RETURN wait;
END $$;
