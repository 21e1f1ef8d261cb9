"""Tables, key/value blocks and the progress bar of promod.ctl.render."""

from __future__ import annotations

import io

from promod.ctl.render import ProgressBar, format_cell, render_kv, render_table, render_value


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_table_columns_are_aligned_under_headers() -> None:
    text = render_table(
        [{"name": "ledger", "restarts": 0}, {"name": "codepool", "restarts": 12}],
        ["name", "restarts"],
    )
    assert text.splitlines() == [
        "NAME      RESTARTS",
        "ledger    0",
        "codepool  12",
    ]
    assert render_table([]) == "(none)"


def test_cells_and_generic_rendering() -> None:
    assert format_cell(None) == "-"
    assert format_cell(True) == "yes"
    assert format_cell(["a", "b"]) == "a, b"
    assert format_cell({"b": 1, "a": [1]}) == '{"a":[1],"b":1}'
    assert render_kv({"version": "1.0", "http": None, "db": {"path": "/x"}}).splitlines() == [
        "version: 1.0",
        "http:    -",
        "db:",
        "  path: /x",
    ]
    assert render_value([{"a": 1}]) == "A\n1"
    assert render_value(None) == "ok"
    assert render_value(["x", "y"]) == "x\ny"


def test_progress_bar_draws_only_on_a_terminal() -> None:
    plain = io.StringIO()
    with ProgressBar(10, "import", stream=plain) as bar:
        bar.advance(5)
    assert plain.getvalue() == ""

    tty = Terminal()
    with ProgressBar(10, "import", stream=tty, min_interval=0) as bar:
        bar.advance(5)
        assert bar.line() == "import [###############---------------] 5/10  50%"
        bar.update(10)
    out = tty.getvalue()
    assert "5/10" in out and out.endswith("10/10 100%\n")
