"""pytest fixtures for plugin authors: a real promod daemon with your plugin registered.

``promod_factory(...)`` writes a fresh ``promod init`` directory, registers the
plugins you name, starts ``promod run`` as a subprocess and waits until it says
``READY=1``; every daemon it made is killed at the end of the test.
``promod_daemon`` is one such daemon with the defaults (the installed ``promod``
entry points, which is how a pip-installed plugin is found)::

    def test_my_provider_is_registered(promod_daemon):
        plugins = {p["name"]: p for p in promod_daemon.call("plugins")}
        assert "provider:my_voucher" in plugins["my_voucher"]["registers"]

    def test_with_a_module(promod_factory):
        d = promod_factory(plugins=["my_plugin"], env={"MY_KEY": "x"})
        d.call("campaign.apply", {...})          # any admin command, as admin

Waiting: ``d.settle()`` (admin command ``debug.settle``) returns once every actor
has done all the work due at the daemon's clock, so a test can assert that
something did *not* happen; :func:`wait_until` (and :func:`wait_until_async` inside
an event loop) polls for something that takes real time — a mail arriving, a
subprocess starting. Those are the only waits a test needs::

    d.call("clock.advance", {"seconds": 3600})
    d.settle()                                    # every actor idle at the new time
    assert d.call("campaign.report", {"campaign": "x"})["granted"] == 30
    wait_until(lambda: smtp.messages, what="the reward mail")

The fixtures are a pytest plugin that promod registers (entry point ``pytest11``);
with ``-p no:promod`` or an older install, add ``pytest_plugins = ["promod.testing"]``
to your top-level ``conftest.py``. A subprocess (not a thread) keeps the daemon's
signal handling, logging and start-up exactly as in production.

In-process tests build a real :class:`~promod.app.App` with :func:`make_app` (a
real store, config, plugin host and command registry) and run real actors under
a real supervisor with :func:`supervised`; a :class:`Recorder` stands in for an
actor whose messages the test checks::

    app = make_app(db, config=config, clock=ManualClock(start=T0))
    ledger = Recorder("ledger")
    async with supervised(app, ledger):
        LiveEngine(app).wake(fired)
        assert ledger.told                      # ProcessDue
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from promod.actors.base import Actor

if TYPE_CHECKING:
    from promod.admin.registry import CommandRegistry
    from promod.app import App
    from promod.clock import Clock
    from promod.config import Config
    from promod.plugins.host import PluginHost
    from promod.store.database import Database

__all__ = [
    "NotifyListener",
    "PromodDaemon",
    "Recorder",
    "make_app",
    "promod_daemon",
    "promod_factory",
    "start_promod",
    "supervised",
    "wait_until",
    "wait_until_async",
]

_SOCKET_ROOM = 100  # AF_UNIX paths are limited to 108 bytes


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 60.0,
    what: str = "a condition",
    interval: float = 0.02,
    max_interval: float = 0.25,
) -> Any:
    """Poll ``predicate`` until it returns something truthy; that value.

    AssertionError naming ``what`` after ``timeout`` seconds. For what takes real
    time outside the daemon's actors; to assert that nothing more happens, settle
    the daemon (:meth:`PromodDaemon.settle`) instead of waiting.

    Polls every ``interval`` at first, then less often the longer the wait: a tenth
    of the time waited so far, at most ``max_interval``. A long wait (a run of
    thousands of grants) then costs little CPU next to the daemon it waits for, even
    when the predicate runs ``promodctl`` or queries the database; it is seen at
    most about a tenth of its duration late.
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        value = predicate()
        if value:
            return value
        now = time.monotonic()
        if now > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(max(interval, min((now - started) / 10, max_interval)))


async def wait_until_async(
    predicate: Callable[[], Any] | Callable[[], Awaitable[Any]],
    *,
    timeout: float = 30.0,  # noqa: ASYNC109
    what: str = "a condition",
    interval: float = 0.005,
) -> Any:
    """:func:`wait_until` inside an event loop: ``predicate`` may be async."""
    deadline = anyio.current_time() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if anyio.current_time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await anyio.sleep(interval)


class NotifyListener:
    """Collects sd_notify datagrams the daemon sends to ``NOTIFY_SOCKET``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.extend(data.decode(errors="replace").splitlines())

    def wait_for(self, line: str, timeout: float = 15.0, count: int = 1) -> None:
        """Until ``line`` has arrived ``count`` times; AssertionError after ``timeout``."""
        try:
            # A cheap check every 20 ms: readiness is on the path of every test.
            wait_until(
                lambda: self.messages.count(line) >= count, timeout=timeout, max_interval=0.02
            )
        except AssertionError:
            raise AssertionError(
                f"no {line!r} (x{count}) from the daemon; got {self.messages}"
            ) from None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self.sock.close()


class PromodDaemon:
    """One daemon: its directory, config, process, logs and admin socket."""

    def __init__(self, root: Path, env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.config_path = root / "promod.toml"
        self.socket = root / "admin.sock"
        self.log_path = root / "daemon.log"
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        # Runs in the child before ``promod run`` (e.g. to lower its resource limits).
        self.preexec: Callable[[], None] | None = None
        self._notify: NotifyListener | None = None
        self._starts = 0

    # -- process --------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> PromodDaemon:
        """Start ``promod run`` and wait for ``READY=1`` (raises with the log if it fails)."""
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start ``promod run`` without waiting for it."""
        if self._notify is not None:
            self._notify.close()
        self._notify = NotifyListener(self.root / f"notify{self._starts}.sock")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in [*self.env.get("PYTHONPATH", "").split(os.pathsep), *sys.path] if p
            ),
            **{k: v for k, v in self.env.items() if k != "PYTHONPATH"},
            "NOTIFY_SOCKET": str(self._notify.path),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("PROMOD_CONFIG", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "promod", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
                preexec_fn=self.preexec,
            )
        self._starts += 1

    def wait_ready(self, timeout: float = 20.0) -> PromodDaemon:
        """Wait for ``READY=1`` of the last start; RuntimeError with the log otherwise."""
        proc, notify = self.proc, self._notify
        assert proc is not None and notify is not None, "not started"

        def ready() -> bool:
            code = proc.poll()
            if code is not None:
                raise RuntimeError(f"promod exited with {code} before it was ready:\n{self.logs()}")
            return notify.messages.count("READY=1") >= 1

        try:
            wait_until(ready, timeout=timeout, what="READY=1", max_interval=0.02)
        except AssertionError:
            self.kill()
            raise RuntimeError(f"promod not ready within {timeout}s:\n{self.logs()}") from None
        return self

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self, timeout: float = 20.0) -> PromodDaemon:
        self.stop()
        return self.start(timeout=timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        self.kill()
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    # -- talking to it --------------------------------------------------------------

    def call(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """Run an admin command; its result, or ``promod.ctl.client.CommandError``."""
        from promod.ctl.client import AdminClient

        with AdminClient(self.socket, timeout=timeout) as client:
            return client.call(cmd, args)

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``promodctl --socket ... ARGS`` as a subprocess (output as text)."""
        return subprocess.run(
            [sys.executable, "-m", "promod.ctl.main", "--socket", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @property
    def http_url(self) -> str | None:
        """``http://HOST:PORT`` of the HTTP API (bound to an ephemeral port), or None."""
        bound = self.call("status").get("http")
        return f"http://{bound}" if bound else None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines, parsed."""
        events = []
        for line in self.logs().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05
    ) -> Any:
        """Poll ``predicate`` until it returns something truthy; that value (:func:`wait_until`)."""
        return wait_until(predicate, timeout=timeout, interval=interval)

    def settle(self, timeout: float = 60.0) -> dict[str, Any]:
        """Run ``debug.settle``: every actor has done the work due at the daemon's clock.

        ``{"rounds", "now"}``. After it, an assertion that something did not happen
        holds for the daemon, not for how fast it was.
        """
        result: dict[str, Any] = self.call("debug.settle", timeout=timeout)
        return result


def _instance_dir() -> Path:
    root = Path(tempfile.mkdtemp(prefix="promod-"))
    if len(str(root / "notify00.sock")) > _SOCKET_ROOM:
        shutil.rmtree(root)
        root = Path(tempfile.mkdtemp(prefix="pm", dir="/tmp"))
    return root


def _plugin_files(root: Path, plugins: Iterable[str | Path | ModuleType]) -> Path | None:
    """Put every plugin where ``plugins.dirs`` finds it: a file each."""
    target = root / "plugins"
    made = False
    for plugin in plugins:
        target.mkdir(exist_ok=True)
        made = True
        if isinstance(plugin, Path):
            if not plugin.is_file():
                raise ValueError(f"{plugin}: a plugin path must be a .py file")
            shutil.copyfile(plugin, target / plugin.name)
            continue
        name = plugin.__name__ if isinstance(plugin, ModuleType) else plugin
        stem = name.replace(".", "_")
        # A shim that registers the module's promod_* hook implementations.
        (target / f"{stem}.py").write_text(
            f'"""Registers {name} for a test."""\n'
            "import importlib\n\n"
            f"_plugin = importlib.import_module({name!r})\n"
            "globals().update(\n"
            "    {k: v for k, v in vars(_plugin).items() if k.startswith('promod_')}\n"
            ")\n"
            "__version__ = getattr(_plugin, '__version__', None)\n"
        )
    return target if made else None


def _literal(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: text


def start_promod(
    *,
    plugins: Iterable[str | Path | ModuleType] = (),
    disable: Iterable[str] = (),
    config: str | None = None,
    edits: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    clock: float | None = None,
    start: bool = True,
    timeout: float = 20.0,
) -> PromodDaemon:
    """Make (and start) a daemon from a fresh ``promod init`` directory.

    plugins: module names, modules or ``.py`` files to register through ``plugins.dirs``
        (installed entry points are registered anyway; don't name those twice).
    disable: plugin names for ``plugins.disable``.
    config: TOML appended to ``promod.toml`` (new sections: channels, crm, ...).
    edits: ``{regex: line}`` replacing the first matching line of ``promod.toml``.
    env: extra environment (API keys of your plugin, say).
    clock: start a manual test clock at this epoch (``PROMOD_TEST_CLOCK``).
    """
    from promod.initdir import init_directory

    root = _instance_dir()
    daemon = PromodDaemon(root, env={**(env or {})})
    try:
        init_directory(root)
        if clock is not None:
            daemon.env["PROMOD_TEST_CLOCK"] = repr(float(clock))
        _write_config(daemon, plugins, disable, config, edits)
        if start:
            daemon.start(timeout=timeout)
    except BaseException:
        # The exception carries the daemon's log; nothing is left behind.
        daemon.close()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return daemon


def _write_config(
    daemon: PromodDaemon,
    plugins: Iterable[str | Path | ModuleType],
    disable: Iterable[str],
    config: str | None,
    edits: Mapping[str, str] | None,
) -> None:
    text = daemon.config_path.read_text()
    replacements = {r'^listen = "127\.0\.0\.1:8470"': 'listen = "127.0.0.1:0"'}
    plugin_dir = _plugin_files(daemon.root, plugins)
    if plugin_dir is not None:
        replacements[r"^dirs = \[\]"] = f"dirs = [{json.dumps(str(plugin_dir))}]"
    disabled = list(disable)
    if disabled:
        replacements[r"^disable = \[\]"] = f"disable = {json.dumps(disabled)}"
    replacements.update(edits or {})
    for pattern, line in replacements.items():
        text, n = re.subn(pattern, _literal(line), text, count=1, flags=re.MULTILINE)
        if n != 1:
            raise ValueError(f"no line matching {pattern!r} in promod.toml")
    if config:
        text += "\n" + config + "\n"
    daemon.config_path.write_text(text)


@pytest.fixture
def promod_factory() -> Iterator[Callable[..., PromodDaemon]]:
    """``promod_factory(**start_promod_arguments)`` → a running PromodDaemon."""
    made: list[PromodDaemon] = []

    def make(*, start: bool = True, timeout: float = 20.0, **kwargs: Any) -> PromodDaemon:
        daemon = start_promod(start=False, timeout=timeout, **kwargs)
        made.append(daemon)
        if start:
            daemon.start(timeout=timeout)
        return daemon

    yield make
    for daemon in made:
        daemon.close()
        shutil.rmtree(daemon.root, ignore_errors=True)


@pytest.fixture
def promod_daemon(promod_factory: Callable[..., PromodDaemon]) -> PromodDaemon:
    """A running daemon with the installed plugins and the sample config."""
    return promod_factory()


# -- in-process apps -------------------------------------------------------------


def make_app(
    db: Database,
    *,
    config: Config | None = None,
    clock: Clock | None = None,
    plugins: PluginHost | None = None,
    commands: CommandRegistry | None = None,
    config_path: Path | None = None,
) -> App:
    """A real App over ``db``: default config, the system clock, a plugin host with
    no plugins and the built-in admin commands, unless given."""
    from promod.admin.audit import AuditLog
    from promod.admin.commands import register_builtin_commands
    from promod.admin.registry import CommandRegistry
    from promod.app import App
    from promod.clock import SystemClock
    from promod.config import parse_config
    from promod.plugins.host import PluginHost

    path = config_path or Path("/nonexistent/promod.toml")
    if plugins is None:
        plugins = PluginHost.load(builtins=(), entry_points=False)
    if commands is None:
        commands = register_builtin_commands(CommandRegistry())
    return App(
        config=config if config is not None else parse_config({}, path),
        config_path=path,
        db=db,
        plugins=plugins,
        commands=commands,
        audit=AuditLog(db),
        clock=clock if clock is not None else SystemClock(),
        ready=True,
    )


class Recorder(Actor):
    """A real actor that keeps every message told to it (``told``) or asked (``asked``,
    answered with None); for a test that checks who was woken."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.told: list[object] = []
        self.asked: list[object] = []

    def tell(self, message: object) -> None:
        self.told.append(message)
        super().tell(message)

    async def ask(self, message: object, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        self.asked.append(message)
        return await super().ask(message, timeout=timeout)

    async def receive(self, message: object) -> object:
        return None


@asynccontextmanager
async def supervised(app: App, *actors: Actor) -> AsyncIterator[App]:
    """Run ``actors`` (built by the test, started in order) under a real supervisor set
    as ``app.supervisor``; stop them in reverse order on the way out."""
    from promod.actors.supervisor import ChildSpec, Restart, Supervisor

    specs = [ChildSpec(actor.name, _given(actor), restart=Restart.TEMPORARY) for actor in actors]
    supervisor = Supervisor(specs)
    app.supervisor = supervisor
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        try:
            yield app
        finally:
            with anyio.CancelScope(shield=True):
                await supervisor.stop()


def _given(actor: Actor) -> Callable[[], Actor]:
    return lambda: actor
