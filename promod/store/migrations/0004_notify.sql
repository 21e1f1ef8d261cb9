-- 0004_notify: the notifier's deliveries (one per outbox event and channel),
-- and the suppression list of bounced and unsubscribed addresses.
-- Times are unix seconds (REAL), UTC.

-- outbox.state: 'pending' until the notifier has turned the event into its
-- deliveries (in one transaction), then 'done'.
ALTER TABLE outbox ADD COLUMN fanned_at REAL;

CREATE INDEX outbox_pending ON outbox (id) WHERE state = 'pending';

-- One row per (event, kind, channel). kind: 'alert' (operator alert, [alerts]),
-- 'webhook' ([webhooks] events/clearance), 'message' (the campaign's message to the
-- customer). The message to send is rendered once, at fan-out, so every retry
-- sends the same thing. state: pending -> sent | dead (max attempts or a permanent
-- failure) | skipped (no consent, suppressed, no address) | dropped (by an operator).
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL,
    type            TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('alert', 'webhook', 'message')),
    channel         TEXT NOT NULL,
    customer_id     TEXT,
    recipient       TEXT,                  -- the address of a customer message
    consent         TEXT,                  -- the consent a customer message needs
    campaign_id     TEXT,
    message         TEXT NOT NULL,         -- JSON of promod.notify.channel.Message
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sent', 'dead', 'skipped', 'dropped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    sent_at         REAL,
    UNIQUE (event_id, kind, channel)
);

CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_state ON deliveries (state, updated_at);

-- A delivery marked sent is final: promod never sends it again.
CREATE TRIGGER deliveries_sent_is_final BEFORE UPDATE OF state ON deliveries
WHEN OLD.state = 'sent' AND NEW.state <> 'sent'
BEGIN
    SELECT RAISE(ABORT, 'a sent delivery is final');
END;

-- Addresses no message may go to. reason: bounced | unsubscribed | complained |
-- manual. An 'unsubscribed' entry is lifted when the customer grants the consent
-- again later (customer_consents.updated_at after created_at).
CREATE TABLE suppressions (
    address     TEXT PRIMARY KEY,          -- lower-cased email address
    reason      TEXT NOT NULL CHECK (reason IN ('bounced', 'unsubscribed', 'complained', 'manual')),
    source      TEXT NOT NULL,             -- smtp | unsubscribe | admin | crm:<name> ...
    customer_id TEXT,
    detail      TEXT,
    created_at  REAL NOT NULL
) WITHOUT ROWID;
