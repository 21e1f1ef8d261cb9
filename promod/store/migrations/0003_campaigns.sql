-- 0003_campaigns: campaigns and their versions, runs and target lists, the cap
-- ledger (grants, counters, per-customer caps), the wallet points ledger and the
-- outbox of events for the notifier. Times here are unix seconds (REAL), UTC.

CREATE TABLE campaigns (
    id            TEXT PRIMARY KEY,
    version       INTEGER NOT NULL,           -- current version (campaign_versions)
    state         TEXT NOT NULL CHECK (state IN
                  ('draft', 'scheduled', 'running', 'paused', 'completed', 'stopped')),
    spec          TEXT NOT NULL,              -- JSON of the current version
    next_run_at   REAL,                       -- when the scheduler starts the next run
    paused_reason TEXT,
    paused_until  REAL,                       -- a daily cap pauses until the next local day
    pilot         TEXT,                       -- "N" or "P%" while a pilot launch is under way
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    launched_at   REAL
);

CREATE TABLE campaign_versions (
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    version     INTEGER NOT NULL,
    spec        TEXT NOT NULL,
    applied_at  REAL NOT NULL,
    applied_by  TEXT,
    PRIMARY KEY (campaign_id, version)
) WITHOUT ROWID;

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    seq         INTEGER NOT NULL,             -- 1, 2, ... within the campaign
    version     INTEGER NOT NULL,             -- the campaign version it executes
    state       TEXT NOT NULL CHECK (state IN
                ('clearance', 'pilot', 'running', 'completed', 'stopped')),
    as_of       REAL NOT NULL,                -- the time the target list was computed for
    clearance_deadline REAL,                  -- clearance runs: when answers stop counting
    started_at  REAL NOT NULL,
    finished_at REAL,
    seed        INTEGER NOT NULL,             -- the random order of this run's audience
    targeted    INTEGER NOT NULL DEFAULT 0,   -- customers in the segment
    UNIQUE (campaign_id, seq)
);

-- The run's target list: every customer of the segment, in rank order, with the
-- moment their reward is due (local-time delivery) and what became of them.
-- Keyed by rank, so granting in rank order writes neighbouring pages.
-- status: awaiting (clearance not yet answered), held (pilot), pending (to be
-- decided by the ledger), granted, refused.
CREATE TABLE run_targets (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    rank        INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    due_at      REAL NOT NULL,
    status      TEXT NOT NULL CHECK (status IN
                ('awaiting', 'held', 'pending', 'granted', 'refused')),
    reason      TEXT,                         -- why refused
    decided_at  REAL,
    approved    INTEGER,                      -- clearance answer: 1 approved, 0 rejected
    answered_at REAL,
    PRIMARY KEY (run_id, rank)
) WITHOUT ROWID;

CREATE UNIQUE INDEX run_targets_customer ON run_targets (run_id, customer_id);
CREATE INDEX run_targets_pending ON run_targets (run_id, due_at, rank) WHERE status = 'pending';
CREATE INDEX run_targets_status ON run_targets (run_id, status, reason);

-- One row per reward granted: at most one live (not failed) grant per (campaign,
-- run, customer), so nothing is granted twice in a run whatever the retries or
-- crashes; a grant whose issue failed may be followed by another (a fallback).
CREATE TABLE grants (
    id           INTEGER PRIMARY KEY,
    campaign_id  TEXT NOT NULL REFERENCES campaigns (id),
    run_id       INTEGER NOT NULL REFERENCES runs (id),
    customer_id  TEXT NOT NULL,
    provider     TEXT NOT NULL,
    amount_minor INTEGER,
    value_minor  INTEGER NOT NULL DEFAULT 0 CHECK (value_minor >= 0),
    currency     TEXT,
    state        TEXT NOT NULL CHECK (state IN ('reserved', 'issued', 'failed')),
    day          TEXT NOT NULL,               -- campaign-local day of the reservation
    created_at   REAL NOT NULL,
    issued_at    REAL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    reference    TEXT,                        -- the provider's reference (voucher id, ...)
    code         TEXT,                        -- the code handed out, if any
    expires_at   REAL,
    error        TEXT
);

CREATE UNIQUE INDEX grants_once ON grants (campaign_id, run_id, customer_id)
    WHERE state != 'failed';
CREATE INDEX grants_customer ON grants (customer_id, created_at);
CREATE INDEX grants_campaign_day ON grants (campaign_id, day);
CREATE INDEX grants_reserved ON grants (next_attempt_at) WHERE state = 'reserved';

-- Counters of the cap ledger. scope: "campaign:<id>" or "provider:<name>";
-- period: "lifetime" or a local day "YYYY-MM-DD". The limits live in the row and
-- the CHECKs make the database refuse any write that would pass one.
CREATE TABLE cap_counters (
    scope         TEXT NOT NULL,
    period        TEXT NOT NULL,
    count         INTEGER NOT NULL DEFAULT 0,
    spend         INTEGER NOT NULL DEFAULT 0,
    customers     INTEGER NOT NULL DEFAULT 0,
    max_count     INTEGER,
    max_spend     INTEGER,
    max_customers INTEGER,
    PRIMARY KEY (scope, period),
    CHECK (count >= 0 AND spend >= 0 AND customers >= 0),
    CHECK (max_count IS NULL OR count <= max_count),
    CHECK (max_spend IS NULL OR spend <= max_spend),
    CHECK (max_customers IS NULL OR customers <= max_customers)
) WITHOUT ROWID;

-- Grants per customer and campaign, across runs, with the per-customer cap.
CREATE TABLE customer_caps (
    campaign_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    grants      INTEGER NOT NULL CHECK (grants >= 0),
    max_grants  INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, customer_id),
    CHECK (grants <= max_grants)
) WITHOUT ROWID;

-- The wallet points ledger: append-only transactions, balances kept by trigger.
CREATE TABLE wallet_transactions (
    id          INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL,
    points      INTEGER NOT NULL,
    grant_id    INTEGER UNIQUE REFERENCES grants (id),
    reason      TEXT NOT NULL,
    created_at  REAL NOT NULL
);

CREATE INDEX wallet_transactions_customer ON wallet_transactions (customer_id, id);

CREATE TABLE wallet_balances (
    customer_id TEXT PRIMARY KEY,
    points      INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER wallet_transactions_balance AFTER INSERT ON wallet_transactions
BEGIN
    INSERT INTO wallet_balances (customer_id, points) VALUES (NEW.customer_id, NEW.points)
    ON CONFLICT (customer_id) DO UPDATE SET points = points + NEW.points;
END;

CREATE TRIGGER wallet_transactions_no_update BEFORE UPDATE ON wallet_transactions
BEGIN
    SELECT RAISE(ABORT, 'wallet_transactions is append-only');
END;

CREATE TRIGGER wallet_transactions_no_delete BEFORE DELETE ON wallet_transactions
BEGIN
    SELECT RAISE(ABORT, 'wallet_transactions is append-only');
END;

-- Events for the notifier (cap.reached, campaign.paused, ...), written in the
-- transaction that causes them, with a stable id.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at REAL NOT NULL,
    state      TEXT NOT NULL DEFAULT 'pending'
);

CREATE INDEX outbox_type ON outbox (type, created_at);
