-- 0012_tags: tag rules (promod.tags), the reason each tag is there, and tag history.
-- Times are unix seconds (REAL), UTC.

-- Why a tag is on a customer: who or what set it. Rows written before this
-- migration have no source.
ALTER TABLE customer_tags ADD COLUMN source TEXT;   -- rule:NAME@V | operator:USER | api:TOKEN | api | import
ALTER TABLE customer_tags ADD COLUMN rule TEXT;     -- the rule's name when a rule set it
ALTER TABLE customer_tags ADD COLUMN reason TEXT;   -- an operator's --reason
ALTER TABLE customer_tags ADD COLUMN since REAL;    -- when it was set

-- The rules: one row per rule name, pointing at its current version (NULL: retired by
-- an apply that no longer lists it). checked_at is the as-of time of the last
-- evaluation over every customer; NULL until the first one.
CREATE TABLE tag_rules (
    name       TEXT PRIMARY KEY,
    version    INTEGER,
    checked_at REAL
);

-- Every version of every rule, kept. events: JSON array of the event names the
-- segment reads (an event of one of them re-evaluates the rule for its customer).
CREATE TABLE tag_rule_versions (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    tag        TEXT NOT NULL,
    mode       TEXT NOT NULL CHECK (mode IN ('sync', 'add')),
    segment    TEXT NOT NULL,           -- JSON, promod.campaigns.segments.Segment.to_dict()
    events     TEXT NOT NULL,           -- JSON array of event names
    recheck    REAL NOT NULL,           -- seconds between evaluations over every customer
    description TEXT,
    applied_at REAL NOT NULL,
    applied_by TEXT NOT NULL,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;

-- Every tag change, kept: added or removed, by what (same words as customer_tags.source).
CREATE TABLE tag_history (
    id          INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL,
    tag         TEXT NOT NULL,
    change      TEXT NOT NULL CHECK (change IN ('added', 'removed')),
    source      TEXT NOT NULL,
    reason      TEXT,
    at          REAL NOT NULL
);

CREATE INDEX tag_history_customer ON tag_history (customer_id, id);
CREATE INDEX tag_history_tag ON tag_history (tag, id);

-- How far the tagger has looked at stored events (events.seq).
CREATE TABLE tag_cursor (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
