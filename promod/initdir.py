"""`promod init DIR`: a self-contained directory for a first, unprivileged run.

Writes ``DIR/promod.toml`` from the commented template ``promod/data/promod.toml.in``
(state, database and admin socket all under DIR, the current user as admin, HTTP on
127.0.0.1:8470, channels on localhost), creates ``DIR/state`` (0750) and writes a
fresh HTTP API token to ``DIR/http-token`` (0600; the config stores only its SHA-256).

    config_path = init_directory(Path("demo"))   # then: promod run --config demo/promod.toml
"""

from __future__ import annotations

import errno
import getpass
import hashlib
import json
import os
import pwd
import re
import secrets
import shlex
from importlib import resources
from pathlib import Path

from promod.config import parse_config_text

__all__ = [
    "CONFIG_NAME",
    "STATE_NAME",
    "TOKEN_NAME",
    "init_directory",
    "render_sample_config",
    "sample_template",
]

CONFIG_NAME = "promod.toml"
STATE_NAME = "state"
TOKEN_NAME = "http-token"  # noqa: S105 - a file name, not a secret
_TEMPLATE = "promod.toml.in"
_PLACEHOLDER = re.compile(r"@([a-z0-9_]+)@")


def sample_template() -> str:
    """The raw template text, with its ``@name@`` placeholders."""
    return resources.files("promod").joinpath("data", _TEMPLATE).read_text(encoding="utf-8")


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string.
    return json.dumps(value)


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return getpass.getuser()


def render_sample_config(
    target: Path,
    *,
    user: str | None = None,
    token_sha256: str | None = None,
    webhook_secret: str | None = None,
) -> str:
    """The sample config for a directory ``target`` (absolute paths under it)."""
    target = target.expanduser().absolute()
    state_dir = target / STATE_NAME
    values = {
        "config_path_comment": shlex.quote(str(target / CONFIG_NAME)),
        "state_dir": _toml_string(str(state_dir)),
        "admin_socket": _toml_string(str(target / "admin.sock")),
        "store_url": _toml_string(f"sqlite://{state_dir / 'promod.db'}"),
        "admin_user": _toml_string(user or _current_user()),
        "token_sha256": _toml_string(token_sha256 or hashlib.sha256(b"").hexdigest()),
        "webhook_secret": _toml_string(webhook_secret or secrets.token_hex(32)),
        "crm_dir": _toml_string(str(state_dir / "crm")),
    }

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"unknown placeholder @{name}@ in {_TEMPLATE}")
        return values[name]

    return _PLACEHOLDER.sub(substitute, sample_template())


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a 0600 file holding ``text``."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def init_directory(target: Path, *, force: bool = False) -> Path:
    """Write ``promod.toml``, ``state/`` and ``http-token`` in ``target``; return the config path.

    Refuses (FileExistsError) to overwrite an existing promod.toml unless ``force``.
    An existing state directory is kept as it is. The written config is validated
    first, so a directory whose paths cannot work (a socket path too long for
    Unix sockets) raises ConfigError before anything is written.
    """
    target = target.expanduser().absolute()
    config_path = target / CONFIG_NAME
    if config_path.exists() and not force:
        raise FileExistsError(
            errno.EEXIST,
            f"{config_path} already exists (use --force to overwrite)",
            str(config_path),
        )
    token = secrets.token_urlsafe(32)
    text = render_sample_config(
        target, token_sha256=hashlib.sha256(token.encode("ascii")).hexdigest()
    )
    parse_config_text(text, config_path)

    target.mkdir(mode=0o750, parents=True, exist_ok=True)
    state_dir = target / STATE_NAME
    if not state_dir.is_dir():
        state_dir.mkdir(mode=0o750)
        state_dir.chmod(0o750)
    (state_dir / "crm").mkdir(mode=0o750, exist_ok=True)  # the [crm.main] drop directory
    _write_private(target / TOKEN_NAME, token + "\n")
    _write_private(config_path, text)
    return config_path
