-- 0009_crm: CRM sync (promod.crm). A connector [crm.NAME] fills one list under one
-- consent by full refreshes; every run is kept with its figures. Times are unix
-- seconds (REAL), UTC.

-- One refresh of a connector's list. state: running -> applied | held | failed;
-- held -> applied | discarded (promodctl crm apply|discard). A run killed while
-- running is marked failed at the next start; its staged records are dropped.
CREATE TABLE crm_runs (
    id          INTEGER PRIMARY KEY,
    connector   TEXT NOT NULL,
    list        TEXT NOT NULL,
    consent     TEXT NOT NULL,
    trigger     TEXT NOT NULL,                -- schedule | manual | restart
    state       TEXT NOT NULL
                CHECK (state IN ('running', 'applied', 'held', 'failed', 'discarded')),
    exported    INTEGER NOT NULL DEFAULT 0,   -- suppression records sent to the CRM first
    fetched     INTEGER NOT NULL DEFAULT 0,   -- records read
    accepted    INTEGER NOT NULL DEFAULT 0,   -- valid records for this list
    invalid     INTEGER NOT NULL DEFAULT 0,   -- refused records (foreign consent, bad field)
    suppressed  INTEGER NOT NULL DEFAULT 0,   -- skipped: bounced/unsubscribed in promod
    reconsented INTEGER NOT NULL DEFAULT 0,   -- suppressions lifted by a newer CRM opt-in
    members     INTEGER,                      -- size of the new list
    added       INTEGER,
    removed     INTEGER,
    errors      TEXT NOT NULL DEFAULT '[]',   -- JSON [{"record": N, "message"}], first 100
    error       TEXT,                         -- why it failed or was held
    version     INTEGER,                      -- the list version it applied
    started_at  REAL NOT NULL,
    finished_at REAL
);

CREATE INDEX crm_runs_connector ON crm_runs (connector, id);

-- The records of a run being fetched (or held), one per customer; moved into the
-- list, the customers and crm_entities by the one transaction that applies the run.
CREATE TABLE crm_staged (
    run_id      INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    email       TEXT,                         -- lower-cased
    timezone    TEXT,
    attributes  TEXT NOT NULL DEFAULT '{}',
    entity_type TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    opt_in_id   TEXT NOT NULL,
    opted_in_at REAL,                         -- the CRM's opt-in time, when it gives one
    description TEXT,
    media_type  TEXT NOT NULL,
    PRIMARY KEY (run_id, customer_id)
) WITHOUT ROWID;

-- What the CRM last said about a customer of a connector's list: the entity to
-- report bounces, unsubscriptions and responses against, and the opt-in last seen.
CREATE TABLE crm_entities (
    connector   TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    email       TEXT,
    entity_type TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    opt_in_id   TEXT NOT NULL,
    opted_in_at REAL,
    description TEXT,
    media_type  TEXT NOT NULL,
    seen_at     REAL NOT NULL,
    PRIMARY KEY (connector, customer_id)
) WITHOUT ROWID;

CREATE INDEX crm_entities_email ON crm_entities (email);

-- The suppressions already sent to a connector's CRM (the export of a run sends
-- every suppression not in here, or suppressed again since).
CREATE TABLE crm_suppressions_sent (
    connector  TEXT NOT NULL,
    address    TEXT NOT NULL,
    created_at REAL NOT NULL,                 -- suppressions.created_at when it was sent
    sent_at    REAL NOT NULL,
    PRIMARY KEY (connector, address)
) WITHOUT ROWID;

-- Response records kept for export: one per recipient, campaign and outcome,
-- pruned after the connector's response_retention.
CREATE TABLE crm_responses (
    id          INTEGER PRIMARY KEY,
    connector   TEXT NOT NULL,
    source_key  TEXT NOT NULL,                -- the delivery, grant or redemption it comes from
    customer_id TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    campaign_id TEXT,
    response    TEXT NOT NULL,                -- delivered | bounced_hard | bounced_soft |
                                              -- unsubscribed | redeemed | granted
    at          REAL NOT NULL,                -- when it happened
    recorded_at REAL NOT NULL,
    exported_at REAL,                         -- NULL until the CRM took it
    UNIQUE (connector, source_key)
);

CREATE INDEX crm_responses_at ON crm_responses (connector, at);
