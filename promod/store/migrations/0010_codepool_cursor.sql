-- 0010_codepool_cursor: allocation behind a cursor per pool instead of a partial
-- index that every allocation rewrote.
--
-- code_pools.alloc_after: every single-use code of the pool with an id at or below
-- it has left `available` (assigned, or skipped as expired). Codes only get new,
-- higher ids, so allocation reads forward from the cursor on codes_pool, an index
-- whose entries never change after a code is loaded.
ALTER TABLE code_pools ADD COLUMN alloc_after INTEGER NOT NULL DEFAULT 0;

-- Existing pools: just before their first available single-use code, or past
-- their last code when none is left (computed while codes_available still exists).
UPDATE code_pools SET alloc_after = coalesce(
    (SELECT min(c.id) - 1 FROM codes c
      WHERE c.pool_id = code_pools.id AND c.state = 'available' AND c.max_uses = 1),
    (SELECT max(c.id) FROM codes c WHERE c.pool_id = code_pools.id),
    0
);

DROP INDEX codes_available;
CREATE INDEX codes_pool ON codes (pool_id, id);
