"""``promodctl codes ...``: the client side of code generation, import, stats and revocation.

``codes generate POOL --count N`` sends the request in parts of at most
:data:`GENERATE_PART` codes (the first part checks the keyspace for all N, so an
impossible request is refused before anything is written) and shows a progress
bar on a terminal. ``codes import POOL FILE`` streams the file in line-numbered
chunks and commits it all or nothing, printing ``line N: message`` for every
reported error::

    promodctl codes generate XMAS25 --count 100000 --pattern 'XMAS-####-####' --expires 60d
    promodctl codes import PARTNER codes.csv
    promodctl codes stats XMAS25
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from promod.ctl.client import AdminClient, CommandError
from promod.ctl.imports import iter_jsonl_rows, print_import_errors
from promod.ctl.render import (
    ProgressBar,
    format_timestamp,
    render_kv,
    render_table,
    render_value,
)
from promod.ctl.usage import UsageError

if TYPE_CHECKING:
    from promod.ctl.main import CtlCommand

__all__ = [
    "GENERATE_PART",
    "generate_codes",
    "import_codes",
    "render_generate",
    "render_pools",
    "render_redeem",
    "render_revoke",
    "render_stats",
    "run_generate",
    "run_import",
    "run_revoke",
]

GENERATE_PART = 100_000
IMPORT_CHUNK = 5000
_GENERATE_OPTIONS = (
    "length",
    "charset",
    "pattern",
    "prefix",
    "postfix",
    "expires",
    "value",
    "max_uses",
    "series",
)


def generate_codes(
    client: AdminClient,
    pool: str,
    count: int,
    options: dict[str, Any],
    *,
    progress: TextIO | None = None,
) -> dict[str, Any]:
    """Generate ``count`` codes in parts; returns the last part's result with the total."""
    result: dict[str, Any] = {}
    done = 0
    with ProgressBar(total=count, label="codes generate", stream=progress) as bar:
        while done < count:
            part = min(GENERATE_PART, count - done)
            args = {**options, "pool": pool, "count": part, "total": count - done}
            result = client.call("codes.generate", args)
            done += part
            bar.update(done)
    return {**result, "generated": done}


def run_generate(command: CtlCommand, client: AdminClient, ns: argparse.Namespace) -> Any:
    if ns.p_count < 1:
        raise UsageError("--count must be at least 1")
    options = {
        name: getattr(ns, f"p_{name}")
        for name in _GENERATE_OPTIONS
        if getattr(ns, f"p_{name}", None) is not None
    }
    return generate_codes(client, ns.p_pool, ns.p_count, options)


def import_codes(
    client: AdminClient,
    pool: str,
    path: Path,
    fmt: str,
    *,
    series: str | None = None,
    max_uses: int | None = None,
    progress: TextIO | None = None,
) -> Any:
    """Stream ``path`` into ``pool`` and commit; CommandError (with line errors) if refused."""
    begin: dict[str, Any] = {"pool": pool, "format": fmt}
    if series is not None:
        begin["series"] = series
    if max_uses is not None:
        begin["max_uses"] = max_uses
    size = path.stat().st_size
    import_id = client.call("codes.import.begin", begin)["import_id"]
    try:
        with (
            path.open("rb") as fh,
            ProgressBar(total=size, label="codes import", stream=progress) as bar,
        ):
            chunk: list[dict[str, Any]] = []
            position = 0
            for row, position in iter_jsonl_rows(fh):
                chunk.append(row)
                if len(chunk) >= IMPORT_CHUNK:
                    client.call("codes.import.chunk", {"import_id": import_id, "rows": chunk})
                    chunk = []
                    bar.update(position)
            if chunk:
                client.call("codes.import.chunk", {"import_id": import_id, "rows": chunk})
            bar.update(position)
    except BaseException:
        try:
            client.call("codes.import.abort", {"import_id": import_id})
        except Exception:  # noqa: S110 - the first failure is the one to report
            pass
        raise
    return client.call("codes.import.commit", {"import_id": import_id})


def run_import(command: CtlCommand, client: AdminClient, ns: argparse.Namespace) -> Any:
    path = Path(ns.p_file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    fmt = ns.p_format or ("csv" if path.suffix.lower() == ".csv" else "lines")
    try:
        return import_codes(
            client, ns.p_pool, path, fmt, series=ns.p_series, max_uses=ns.p_max_uses
        )
    except CommandError as exc:
        print_import_errors(exc)
        raise


def run_revoke(command: CtlCommand, client: AdminClient, ns: argparse.Namespace) -> Any:
    if (ns.p_code is None) == (not ns.p_all_unassigned):
        raise UsageError("codes revoke: give a CODE or --all-unassigned")
    args: dict[str, Any] = {"pool": ns.p_pool}
    if ns.p_code is not None:
        args["code"] = ns.p_code
    else:
        args["all_unassigned"] = True
    return client.call("codes.revoke", args)


# ---------------------------------------------------------------- renderers


def render_generate(result: Any) -> str:
    if isinstance(result, dict) and "generated" in result:
        return (
            f"generated {result['generated']:,} codes into pool {result.get('pool')} "
            f"({result.get('available', 0):,} available; keyspace {result.get('keyspace')})"
        )
    return render_value(result)


def render_import(result: Any) -> str:
    if isinstance(result, dict) and "imported" in result:
        return (
            f"imported {result['imported']:,} codes into pool {result.get('pool')} "
            f"({result.get('available', 0):,} available)"
        )
    return render_value(result)


def render_stats(result: Any) -> str:
    if not isinstance(result, dict):
        return render_value(result)
    shown = dict(result)
    counts = shown.pop("counts", {})
    runout = shown.get("projected_runout_at")
    shown["projected_runout_at"] = format_timestamp(runout) if runout else "-"
    text = render_kv(shown)
    if isinstance(counts, dict):
        text += "\n\n" + render_table(
            [{"state": s, "codes": n} for s, n in counts.items()], ["state", "codes"]
        )
    return text


def render_pools(result: Any) -> str:
    if not isinstance(result, list):
        return render_value(result)
    return render_table(result, ["pool", "series", "available", "loaded", "threshold", "low"])


def render_revoke(result: Any) -> str:
    if isinstance(result, dict) and "revoked" in result:
        return f"revoked {result['revoked']:,} code(s) of pool {result.get('pool')}"
    return render_value(result)


def render_redeem(result: Any) -> str:
    if isinstance(result, dict) and "redeemed" in result:
        return "redeemed" if result["redeemed"] else f"not redeemed: {result.get('reason')}"
    return render_value(result)
