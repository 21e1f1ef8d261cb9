-- 0008_holds_and_reservations: who or what paused a campaign and when, an
-- operator's pause that outlasts every automatic resume, and the cap counters
-- each grant booked (so a grant that is never issued gives back exactly those).

-- paused_by/paused_at: who or what set the current paused_reason ("ledger",
-- "scheduler", or an operator's name) and when.
ALTER TABLE campaigns ADD COLUMN paused_by TEXT;
ALTER TABLE campaigns ADD COLUMN paused_at REAL;
-- An operator's pause (hold): while set, no automatic resume (daily window,
-- circuit closed again, ...) makes the campaign run; only an operator's resume.
ALTER TABLE campaigns ADD COLUMN held_by TEXT;
ALTER TABLE campaigns ADD COLUMN held_at REAL;

-- JSON [[scope, period], ...]: the cap_counters rows the reservation booked.
-- NULL for grants reserved before this migration (released by their scopes).
ALTER TABLE grants ADD COLUMN counters TEXT;
