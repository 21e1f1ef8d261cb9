-- 0002_customers: customer profiles, tags, consents, behaviour events, custom lists,
-- and the staging area of all-or-nothing imports (promod.customers.imports).
-- Times: *_at columns are ISO-8601 UTC text, events.ts is unix seconds UTC.

CREATE TABLE customers (
    id         TEXT PRIMARY KEY,
    email      TEXT,
    timezone   TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',  -- JSON object of scalars
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE customer_tags (
    tag         TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    PRIMARY KEY (tag, customer_id)
) WITHOUT ROWID;

CREATE INDEX customer_tags_customer ON customer_tags (customer_id);

CREATE TABLE customer_consents (
    customer_id TEXT NOT NULL,
    consent     TEXT NOT NULL,
    granted     INTEGER NOT NULL,  -- 1 granted, 0 withdrawn
    updated_at  TEXT NOT NULL,     -- when `granted` last changed
    source      TEXT NOT NULL,     -- import | api | crm:<name> ...
    PRIMARY KEY (customer_id, consent)
) WITHOUT ROWID;

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    event_id    TEXT UNIQUE,             -- optional, from the sender; duplicates are skipped
    customer_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    ts          INTEGER NOT NULL,        -- unix seconds UTC
    properties  TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX events_name_customer_ts ON events (name, customer_id, ts);
CREATE INDEX events_customer_ts ON events (customer_id, ts);

CREATE TABLE custom_lists (
    name        TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    PRIMARY KEY (name, customer_id)
) WITHOUT ROWID;

-- One row per validated input line of an import in progress; moved into the real
-- tables by one transaction at commit, or discarded.
CREATE TABLE import_staging (
    import_id TEXT NOT NULL,
    line      INTEGER NOT NULL,
    payload   TEXT NOT NULL,  -- the normalised record as JSON
    PRIMARY KEY (import_id, line)
) WITHOUT ROWID;

-- The imports in progress: what they import, counts, and the first errors (line-numbered).
CREATE TABLE imports (
    import_id   TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,                -- customers | events
    format      TEXT NOT NULL,                -- jsonl | csv
    started_at  INTEGER NOT NULL,             -- unix seconds
    touched_at  INTEGER NOT NULL,             -- last chunk; abandoned after an hour
    rows        INTEGER NOT NULL DEFAULT 0,   -- rows received
    staged      INTEGER NOT NULL DEFAULT 0,   -- rows that passed validation
    error_count INTEGER NOT NULL DEFAULT 0,
    errors      TEXT NOT NULL DEFAULT '[]'    -- JSON [{"line", "message"}], at most 100
);
