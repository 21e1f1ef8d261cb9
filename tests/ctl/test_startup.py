"""promodctl starts light: the CLI loads neither pydantic, the store nor the HTTP stack.

Every admin command is one promodctl process; what ``promod.ctl.main`` imports at
module level is paid on each of them (and by each e2e test that shells out to it).
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pydantic", "aiosqlite", "fastapi", "promod.store.database", "promod.campaigns.spec")


def test_promodctl_imports_no_heavy_module() -> None:
    code = (
        f"import sys, promod.ctl.main\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert res.stdout.strip() == "", f"promodctl imported {res.stdout.strip()} at start"
