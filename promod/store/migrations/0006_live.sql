-- 0006_live: live-action campaigns (promod.live). The cursor of the event stream
-- the trigger engine has read, one row per firing (the target it added to the
-- campaign's live run), counts of firings that added nobody, and the durable
-- timers of inaction triggers ("after A, no B within 72h"). Times: unix seconds.

-- Events up to this seq have been matched against the live triggers (one row).
-- Starts at the newest event: what was stored before live campaigns existed
-- never fires.
CREATE TABLE live_cursor (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO live_cursor (id, seq) SELECT 1, coalesce(max(seq), 0) FROM events;

-- One row per target a trigger added, written in the transaction that adds it.
-- event_ts: when the trigger became true (the event's ts; for an inaction
-- trigger the moment its window closed); fired_at: when the engine fired.
CREATE TABLE live_firings (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    customer_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    source      TEXT NOT NULL CHECK (source IN ('event', 'inaction')),
    event_seq   INTEGER,              -- the event (inaction: the `after` event)
    event_ts    REAL NOT NULL,
    fired_at    REAL NOT NULL,
    due_at      REAL NOT NULL,
    PRIMARY KEY (run_id, customer_id)
) WITHOUT ROWID;

CREATE INDEX live_firings_campaign ON live_firings (campaign_id);

-- Firings that added no target, by reason (once_per_customer, segment, ...).
CREATE TABLE live_refusals (
    campaign_id TEXT NOT NULL,
    reason      TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, reason)
) WITHOUT ROWID;

-- Inaction windows: opened by an `after` event, cancelled by a `missing` event
-- inside the window, fired (in one transaction with the target) when it closes.
CREATE TABLE live_timers (
    id          INTEGER PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    customer_id TEXT NOT NULL,
    missing     TEXT NOT NULL,        -- the event that must not follow
    after_seq   INTEGER NOT NULL,
    after_ts    REAL NOT NULL,
    fires_at    REAL NOT NULL,        -- after_ts + within: the window is [after_ts, fires_at)
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'fired', 'cancelled', 'expired')),
    closed_at   REAL,
    closed_by   INTEGER               -- seq of the event that cancelled it
);

CREATE UNIQUE INDEX live_timers_open ON live_timers (campaign_id, customer_id)
    WHERE state = 'pending';
CREATE INDEX live_timers_due ON live_timers (fires_at) WHERE state = 'pending';
CREATE INDEX live_timers_campaign ON live_timers (campaign_id, state);
