"""Admin command model: roles, callers, commands, argument checks and the registry.

Owns the vocabulary every admin command is written in. Built-in commands and plugin
commands are declared the same way, with the :func:`command` decorator::

    @command("campaign.pause", role=Role.OPERATOR, mutating=True,
             summary="pause a running campaign", usage="campaign.pause CAMPAIGN",
             args={"campaign": ArgSpec(str, required=True)})
    async def campaign_pause(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        ...

    registry = CommandRegistry()
    registry.register(campaign_pause)
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promod.app import App

__all__ = [
    "ERROR_CODES",
    "ArgSpec",
    "Caller",
    "Command",
    "CommandContext",
    "CommandError",
    "CommandRegistry",
    "Handler",
    "Role",
    "command",
]


class Role(IntEnum):
    """Admin socket roles; a higher role may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """The role's name as written in the config (``admin``/``operator``/``viewer``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> Role:
        """``"operator"`` -> ``Role.OPERATOR``; ValueError for anything else."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r} (admin, operator, viewer)") from None


@dataclass(frozen=True)
class Caller:
    """Who is on the other end of an admin connection (from SO_PEERCRED)."""

    uid: int
    gid: int
    pid: int
    user: str
    role: Role | None  # None: not mapped in [admin.roles]; may only run public commands

    @classmethod
    def daemon(cls, user: str) -> Caller:
        """The daemon itself acting for ``user`` (a schedule, an HTTP token), for the audit log."""
        return cls(uid=os.getuid(), gid=os.getgid(), pid=os.getpid(), user=user, role=None)


ERROR_CODES = frozenset(
    {
        "bad_request",  # the line is not a JSON request object
        "unknown_command",
        "invalid_args",  # unknown argument, wrong type, missing required argument
        "forbidden",  # the caller's role is too low
        "not_found",
        "conflict",
        "unavailable",  # e.g. mutating command while the daemon shuts down
        "internal",  # a handler raised something that is not a CommandError
    }
)


class CommandError(Exception):
    """A refusal or failure answered to the client as ``{"code", "message", "details"}``."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class ArgSpec:
    """One named argument of a command."""

    type: type | tuple[type, ...]  # JSON types: str, int, float, bool, list, dict
    required: bool = False
    help: str = ""
    secret: bool = False  # never written to the audit log in clear


@dataclass
class CommandContext:
    """What a handler gets besides its arguments."""

    app: App
    caller: Caller
    registry: CommandRegistry | None = None  # the registry serving this call


Handler = Callable[[CommandContext, dict[str, Any]], Awaitable[Any]]


@dataclass
class Command:
    """A named admin command.

    ``role`` is the lowest role allowed to run it; ``None`` lets any peer run it, even
    one not mapped to a role (only ``ping``, ``help`` and ``version`` should be public).
    ``mutating`` is a bool, or a function of the call's arguments for commands whose
    plain form only reads (``log-level`` reads, ``log-level {"level": ...}`` sets).
    """

    name: str
    handler: Handler
    role: Role | None
    mutating: bool | Callable[[Mapping[str, Any]], bool]
    summary: str
    usage: str = ""
    args: dict[str, ArgSpec] = field(default_factory=dict)

    def is_mutating(self, args: Mapping[str, Any]) -> bool:
        if callable(self.mutating):
            return bool(self.mutating(args))
        return self.mutating

    def allows(self, role: Role | None) -> bool:
        """True when a caller with ``role`` may run this command."""
        if self.role is None:
            return True
        return role is not None and role >= self.role

    def describe(self) -> dict[str, Any]:
        """JSON-ready description used by ``help``."""
        return {
            "name": self.name,
            "role": self.role.label if self.role is not None else None,
            "mutating": self.mutating if isinstance(self.mutating, bool) else "depends",
            "summary": self.summary,
            "usage": self.usage or self.name,
            "args": {
                name: {
                    "type": _type_names(spec.type),
                    "required": spec.required,
                    "help": spec.help,
                }
                for name, spec in self.args.items()
            },
        }


_JSON_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


def _type_names(types: type | tuple[type, ...]) -> str:
    items = types if isinstance(types, tuple) else (types,)
    return " or ".join(_JSON_TYPE_NAMES.get(t, t.__name__) for t in items)


# Integers an argument may carry: what the store holds (SQLite's 64-bit INTEGER).
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


def _fits(value: int) -> bool:
    return INT_MIN <= value <= INT_MAX


def _matches(value: Any, types: type | tuple[type, ...]) -> bool:
    items = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool):
        return bool in items
    if isinstance(value, int) and float in items:
        return True
    return isinstance(value, items)


class CommandRegistry:
    """Commands by name, in registration order."""

    def __init__(self, commands: Iterable[Command] = ()) -> None:
        self._commands: dict[str, Command] = {}
        for cmd in commands:
            self.register(cmd)

    def register(self, cmd: Command) -> Command:
        if not isinstance(cmd, Command):
            raise TypeError(f"expected a Command, got {type(cmd).__name__}")
        if not cmd.name or any(c.isspace() for c in cmd.name):
            raise ValueError(f"invalid command name {cmd.name!r}")
        if cmd.name in self._commands:
            raise ValueError(f"command {cmd.name!r} is already registered")
        self._commands[cmd.name] = cmd
        return cmd

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def __len__(self) -> int:
        return len(self._commands)

    def names(self) -> list[str]:
        return sorted(self._commands)

    def all(self) -> list[Command]:
        return [self._commands[name] for name in self.names()]

    def validate_args(self, cmd: Command, args: Any) -> dict[str, Any]:
        """Checked copy of ``args``: an object, only known names, right types, required present.

        A JSON ``null`` for an optional argument counts as leaving it out.
        """
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise CommandError("invalid_args", f"{cmd.name}: args must be a JSON object")
        unknown = sorted(set(args) - set(cmd.args))
        if unknown:
            raise CommandError(
                "invalid_args",
                f"{cmd.name}: unknown argument{'s' if len(unknown) > 1 else ''} "
                + ", ".join(repr(name) for name in unknown),
                {"unknown": unknown, "usage": cmd.usage or cmd.name},
            )
        checked: dict[str, Any] = {}
        for name, spec in cmd.args.items():
            value = args.get(name)
            if value is None:
                if spec.required:
                    raise CommandError(
                        "invalid_args",
                        f"{cmd.name}: missing required argument {name!r}",
                        {"missing": name, "usage": cmd.usage or cmd.name},
                    )
                continue
            if not _matches(value, spec.type):
                raise CommandError(
                    "invalid_args",
                    f"{cmd.name}: argument {name!r} must be {_type_names(spec.type)}",
                    {"argument": name, "expected": _type_names(spec.type)},
                )
            if isinstance(value, int) and not isinstance(value, bool) and not _fits(value):
                raise CommandError(
                    "invalid_args",
                    f"{cmd.name}: argument {name!r} is out of range "
                    f"(an integer from {INT_MIN} to {INT_MAX})",
                    {"argument": name, "expected": f"{INT_MIN}..{INT_MAX}"},
                )
            checked[name] = value
        return checked


def command(
    name: str,
    *,
    role: Role | None,
    mutating: bool | Callable[[Mapping[str, Any]], bool],
    summary: str,
    usage: str = "",
    args: dict[str, ArgSpec] | None = None,
) -> Callable[[Handler], Command]:
    """Decorator turning an async handler into a :class:`Command` (register it afterwards)."""

    def wrap(handler: Handler) -> Command:
        return Command(
            name=name,
            handler=handler,
            role=role,
            mutating=mutating,
            summary=summary,
            usage=usage,
            args=dict(args or {}),
        )

    return wrap
