"""All-or-nothing streamed list imports (the daemon's side of ``promodctl lists import``).

The work is done in the store module :mod:`promod.lists.store_imports`, one
transaction per call; these are the names callers use::

    import_id = await begin_list_import(db, "vip-2026", "csv", mode="replace",
                                        columns=["id", "name"], now=now)
    await stage_list_chunk(db, import_id, [{"line": 2, "row": {"id": "c1", "name": "x"}}],
                           now=now)
    summary = await commit_list_import(db, import_id, now=now)
"""

from __future__ import annotations

from promod.lists.store_imports import (
    ABANDONED_AFTER,
    FORMATS,
    MAX_CHUNK_ROWS,
    abort_list_import,
    begin_list_import,
    commit_list_import,
    stage_list_chunk,
)

__all__ = [
    "ABANDONED_AFTER",
    "FORMATS",
    "MAX_CHUNK_ROWS",
    "abort_list_import",
    "begin_list_import",
    "commit_list_import",
    "stage_list_chunk",
]
