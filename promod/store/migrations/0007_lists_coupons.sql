-- 0007_lists_coupons: versioned custom lists (promod.lists) and the redemptions of
-- shared coupon codes (the `coupon` provider). Times are unix seconds (REAL), UTC.

-- A custom list. `version` is the version readers see (list_versions, state
-- 'current'); NULL until the first version is applied. A replacement is written
-- as a new 'staging' version beside the current one, in as many transactions as it
-- needs, and applied by one transaction that moves `version` and retires the old
-- one: readers and running campaigns see the old list until the new one is whole,
-- and a writer killed half way leaves only a staging version, which is discarded.
CREATE TABLE lists (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    version    INTEGER,                       -- the current version, NULL before the first
    source     TEXT NOT NULL,                 -- who last changed it: import | api | crm:<name>
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

-- Every version of a list. state: staging (being written, invisible) -> current
-- (at most one per list) -> retired (members deleted); or staging -> discarded.
CREATE TABLE list_versions (
    list_id    INTEGER NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('staging', 'current', 'retired', 'discarded')),
    source     TEXT NOT NULL,
    members    INTEGER NOT NULL DEFAULT 0,    -- members once applied
    added      INTEGER,                       -- against the version it replaced
    removed    INTEGER,
    created_at REAL NOT NULL,
    applied_at REAL,
    PRIMARY KEY (list_id, version)
) WITHOUT ROWID;

CREATE UNIQUE INDEX list_versions_current ON list_versions (list_id) WHERE state = 'current';

-- The members of a version. A member need not have a customer profile (yet).
CREATE TABLE list_members (
    list_id     INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    PRIMARY KEY (list_id, version, customer_id),
    FOREIGN KEY (list_id, version) REFERENCES list_versions (list_id, version) ON DELETE CASCADE
) WITHOUT ROWID;

-- A `promodctl lists import` in progress: its rows are staged as the members of a
-- staging version; commit applies that version (replace) or merges it into the
-- current one (add), or refuses the import with its errors by line.
CREATE TABLE list_imports (
    import_id   TEXT PRIMARY KEY,
    list_id     INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('replace', 'add')),
    format      TEXT NOT NULL,                -- lines | csv | jsonl
    started_at  REAL NOT NULL,
    touched_at  REAL NOT NULL,                -- last chunk; abandoned after an hour
    rows        INTEGER NOT NULL DEFAULT 0,
    error_count INTEGER NOT NULL DEFAULT 0,
    errors      TEXT NOT NULL DEFAULT '[]',   -- JSON [{"line", "message"}], at most 100
    FOREIGN KEY (list_id, version) REFERENCES list_versions (list_id, version) ON DELETE CASCADE
);

-- Keep what the old table held (nothing wrote it, but a site may have).
INSERT INTO lists (name, version, source, created_at, updated_at)
    SELECT DISTINCT name, 1, 'import', strftime('%s', 'now'), strftime('%s', 'now')
    FROM custom_lists;
INSERT INTO list_versions (list_id, version, state, source, members, created_at, applied_at)
    SELECT l.id, 1, 'current', 'import',
           (SELECT count(*) FROM custom_lists c WHERE c.name = l.name),
           l.created_at, l.created_at
    FROM lists l;
INSERT INTO list_members (list_id, version, customer_id)
    SELECT l.id, 1, c.customer_id FROM custom_lists c JOIN lists l ON l.name = c.name;
DROP TABLE custom_lists;

-- What segments and custom_list campaigns read: the current members of every list.
CREATE VIEW custom_lists (name, customer_id) AS
    SELECT l.name, m.customer_id
    FROM lists l
    JOIN list_members m ON m.list_id = l.id AND m.version = l.version;

-- One row per redemption of a shared coupon code: each coupon grant is redeemable
-- once, so a customer redeems the code as often as the campaign granted it to them.
CREATE TABLE coupon_redemptions (
    grant_id    INTEGER PRIMARY KEY REFERENCES grants (id),
    campaign_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    code        TEXT NOT NULL,
    ip          TEXT,
    redeemed_at REAL NOT NULL
);

CREATE INDEX coupon_redemptions_campaign ON coupon_redemptions (campaign_id);
CREATE INDEX grants_coupon ON grants (customer_id, code) WHERE provider = 'coupon';
