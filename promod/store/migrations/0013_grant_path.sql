-- 0013_grant_path: fewer B-tree entries written per grant, the same facts kept.
--
-- One customer-keyed index on grants serves the uniqueness of a live grant per
-- (campaign, run, customer), the per-customer cap (grants of the customer in the
-- campaign) and the frequency cap (the customer's grants, by their time); the
-- per-customer counter table becomes a view of the grants, and the database still
-- refuses a grant past the campaign's per-customer cap (trigger). The wallet keeps
-- its append-only transactions and its balances; nothing reads the transactions by
-- customer, so they lose that index.

DROP INDEX grants_once;
DROP INDEX grants_customer;
CREATE UNIQUE INDEX grants_once ON grants (customer_id, campaign_id, run_id)
    WHERE state != 'failed';

DROP TABLE customer_caps;
CREATE VIEW customer_caps AS
    SELECT g.campaign_id AS campaign_id,
           g.customer_id AS customer_id,
           count(*) AS grants,
           (SELECT json_extract(c.spec, '$.caps.per_customer') FROM campaigns c
             WHERE c.id = g.campaign_id) AS max_grants
    FROM grants g
    WHERE g.state != 'failed'
    GROUP BY g.customer_id, g.campaign_id;

-- Cheap for a customer's first grant of the campaign: the EXISTS probe finds nothing
-- and the cap is not looked up.
CREATE TRIGGER grants_per_customer BEFORE INSERT ON grants
WHEN NEW.state != 'failed'
 AND EXISTS (SELECT 1 FROM grants
              WHERE customer_id = NEW.customer_id AND campaign_id = NEW.campaign_id
                AND state != 'failed')
 AND (SELECT count(*) FROM grants
       WHERE customer_id = NEW.customer_id AND campaign_id = NEW.campaign_id
         AND state != 'failed')
     >= (SELECT json_extract(spec, '$.caps.per_customer') FROM campaigns
          WHERE id = NEW.campaign_id)
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: per-customer cap of the campaign');
END;

DROP INDEX wallet_transactions_customer;

-- Transactional grants are never released: only reserved ones need their counters.
UPDATE grants SET counters = NULL WHERE state != 'reserved';
