-- 0011_notifications: the consent history and the sends of notification campaigns
-- (docs/notifications.md). Times of consents are ISO-8601 UTC text like
-- customer_consents.updated_at; send times are unix seconds (REAL).

-- Every change of a customer's consent, with what made it: page (the preference
-- page), unsubscribe (a one-click link), api (PUT /v1/customers/{id}/consents),
-- import, crm:<name>. Written by the triggers below, so no writer can forget it;
-- a write that leaves `granted` as it was adds nothing.
CREATE TABLE consent_history (
    id          INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL,
    consent     TEXT NOT NULL,
    granted     INTEGER NOT NULL,   -- 1 granted, 0 withdrawn
    source      TEXT NOT NULL,
    changed_at  TEXT NOT NULL
);

CREATE INDEX consent_history_customer ON consent_history (customer_id, consent, id);

-- Existing databases: the consents as they are now are the first entries.
INSERT INTO consent_history (customer_id, consent, granted, source, changed_at)
SELECT customer_id, consent, granted, source, updated_at FROM customer_consents
ORDER BY updated_at, customer_id, consent;

CREATE TRIGGER consent_history_insert AFTER INSERT ON customer_consents
WHEN coalesce((SELECT h.granted FROM consent_history AS h
               WHERE h.customer_id = NEW.customer_id AND h.consent = NEW.consent
               ORDER BY h.id DESC LIMIT 1), -1) <> NEW.granted
BEGIN
    INSERT INTO consent_history (customer_id, consent, granted, source, changed_at)
    VALUES (NEW.customer_id, NEW.consent, NEW.granted, NEW.source, NEW.updated_at);
END;

CREATE TRIGGER consent_history_update AFTER UPDATE ON customer_consents
WHEN coalesce((SELECT h.granted FROM consent_history AS h
               WHERE h.customer_id = NEW.customer_id AND h.consent = NEW.consent
               ORDER BY h.id DESC LIMIT 1), -1) <> NEW.granted
BEGIN
    INSERT INTO consent_history (customer_id, consent, granted, source, changed_at)
    VALUES (NEW.customer_id, NEW.consent, NEW.granted, NEW.source, NEW.updated_at);
END;

-- When a notification campaign last selected a customer for a message: its
-- `not_within` rule skips that customer until sent_at + not_within.
CREATE TABLE notification_sends (
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    customer_id TEXT NOT NULL,
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    sent_at     REAL NOT NULL,
    PRIMARY KEY (campaign_id, customer_id)
) WITHOUT ROWID;
