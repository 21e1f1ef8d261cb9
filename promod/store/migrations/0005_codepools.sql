-- 0005_codepools: unique code inventory (pools of codes, their lifecycle),
-- redemption attempts for the fraud limits, blocked sources and import staging.
-- Times are unix seconds (REAL), UTC. Money is integer minor units.

-- A pool of codes. Codes are unique within their series; pools sharing a series
-- share that uniqueness, and a customer holds at most one code of a series.
-- `available` and `loaded` are counters kept in step by promod.codepool.store in
-- the same transaction as every change of state (allocation stays O(1) to check).
CREATE TABLE code_pools (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    series       TEXT NOT NULL,
    low_absolute INTEGER CHECK (low_absolute IS NULL OR low_absolute >= 0),
    low_percent  INTEGER CHECK (low_percent IS NULL OR (low_percent BETWEEN 0 AND 100)),
    low_alerted  INTEGER NOT NULL DEFAULT 0,  -- 1 once codepool.low fired; 0 again after replenishment
    available    INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0),
    loaded       INTEGER NOT NULL DEFAULT 0,  -- codes ever added (generated or imported)
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);

-- One row per code. state: available -> assigned -> redeemed, or expired, or revoked.
-- max_uses > 1 makes a shared coupon: anyone may redeem it once, up to max_uses
-- times in all (redemptions rows); it is never allocated to a grant.
CREATE TABLE codes (
    id          INTEGER PRIMARY KEY,
    pool_id     INTEGER NOT NULL REFERENCES code_pools (id),
    series      TEXT NOT NULL,
    code        TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'available'
                CHECK (state IN ('available', 'assigned', 'redeemed', 'expired', 'revoked')),
    value_minor INTEGER CHECK (value_minor IS NULL OR value_minor >= 0),
    expires_at  REAL,
    max_uses    INTEGER NOT NULL DEFAULT 1 CHECK (max_uses >= 1),
    uses        INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
    customer_id TEXT,                         -- the holder, once assigned
    grant_id    INTEGER,                      -- grants.id of the grant that took it
    campaign_id TEXT,
    created_at  REAL NOT NULL,
    assigned_at REAL,
    redeemed_at REAL,
    ended_at    REAL                          -- when it expired or was revoked
);

-- Lookups by code (redemption) and uniqueness within a series.
CREATE UNIQUE INDEX codes_code ON codes (code, series);
-- Allocation: the next available single-use code of a pool, fast to the last one.
CREATE INDEX codes_available ON codes (pool_id, id) WHERE state = 'available' AND max_uses = 1;
-- One code per grant; one live code of a series per customer.
CREATE UNIQUE INDEX codes_grant ON codes (grant_id) WHERE grant_id IS NOT NULL;
CREATE UNIQUE INDEX codes_customer_series ON codes (customer_id, series)
    WHERE customer_id IS NOT NULL AND state <> 'revoked';
-- The expiry sweep.
CREATE INDEX codes_expiring ON codes (expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('available', 'assigned');

-- Redemptions (one per code and customer; a single-use code has at most one).
CREATE TABLE code_redemptions (
    id          INTEGER PRIMARY KEY,
    code_id     INTEGER NOT NULL REFERENCES codes (id),
    customer_id TEXT NOT NULL,
    ip          TEXT,
    redeemed_at REAL NOT NULL,
    UNIQUE (code_id, customer_id)
);

CREATE INDEX code_redemptions_time ON code_redemptions (redeemed_at);

-- Every redemption attempt that reached the lookup (for the [fraud] limits).
-- source: the client IP (IPv6 by its /64). ok: 1 redeemed, 0 failed.
CREATE TABLE redemption_attempts (
    id          INTEGER PRIMARY KEY,
    ts          REAL NOT NULL,
    source      TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    ok          INTEGER NOT NULL
);

CREATE INDEX redemption_attempts_source ON redemption_attempts (source, ts);
CREATE INDEX redemption_attempts_customer ON redemption_attempts (customer_id, ts);

-- Sources blocked for guessing codes; the row stays after the block ends so the
-- failures before it are not counted again.
CREATE TABLE redemption_blocks (
    source     TEXT PRIMARY KEY,
    blocked_at REAL NOT NULL,
    until      REAL NOT NULL,
    failures   INTEGER NOT NULL
) WITHOUT ROWID;

-- Rows of a `codes import` in progress (all or nothing at commit).
CREATE TABLE code_import_staging (
    import_id   TEXT NOT NULL,
    line        INTEGER NOT NULL,
    code        TEXT NOT NULL,
    expires_at  REAL,
    value_minor INTEGER,
    PRIMARY KEY (import_id, line)
) WITHOUT ROWID;
