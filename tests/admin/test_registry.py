"""Commands, roles and argument validation of promod.admin.registry."""

from __future__ import annotations

from typing import Any

import pytest

from promod.admin.registry import (
    ArgSpec,
    Command,
    CommandContext,
    CommandError,
    CommandRegistry,
    Role,
    command,
)


@command(
    "thing.set",
    role=Role.OPERATOR,
    mutating=True,
    summary="set a thing",
    usage="thing.set NAME [--count N]",
    args={
        "name": ArgSpec(str, required=True),
        "count": ArgSpec(int),
        "ratio": ArgSpec(float),
        "flag": ArgSpec(bool),
        "tags": ArgSpec((list, str)),
    },
)
async def thing_set(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return args


def test_roles_are_ordered_viewer_operator_admin() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.ADMIN
    assert Role.parse("operator") is Role.OPERATOR
    assert Role.ADMIN.label == "admin"
    with pytest.raises(ValueError):
        Role.parse("root")


def test_decorator_builds_a_command() -> None:
    assert isinstance(thing_set, Command)
    assert thing_set.name == "thing.set"
    assert thing_set.is_mutating({})
    assert thing_set.allows(Role.ADMIN) and thing_set.allows(Role.OPERATOR)
    assert not thing_set.allows(Role.VIEWER) and not thing_set.allows(None)
    assert thing_set.describe()["args"]["count"]["type"] == "integer"


def test_duplicate_command_name_is_refused() -> None:
    registry = CommandRegistry([thing_set])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(thing_set)
    assert registry.names() == ["thing.set"]
    assert registry.get("thing.set") is thing_set
    assert registry.get("nope") is None


def test_mutating_may_depend_on_the_arguments() -> None:
    cmd = Command(
        name="x",
        handler=thing_set.handler,
        role=Role.VIEWER,
        mutating=lambda args: "value" in args,
        summary="",
    )
    assert not cmd.is_mutating({})
    assert cmd.is_mutating({"value": 1})
    assert cmd.describe()["mutating"] == "depends"


def test_valid_args_pass_and_nulls_count_as_absent() -> None:
    registry = CommandRegistry([thing_set])
    args = registry.validate_args(
        thing_set, {"name": "a", "count": 3, "ratio": 2, "flag": None, "tags": ["x"]}
    )
    assert args == {"name": "a", "count": 3, "ratio": 2, "tags": ["x"]}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"name": "a", "bogus": 1}, "unknown argument 'bogus'"),
        ({"name": 5}, "'name' must be string"),
        ({"name": "a", "count": "3"}, "'count' must be integer"),
        ({"name": "a", "count": True}, "'count' must be integer"),
        ({"name": "a", "count": 1.5}, "'count' must be integer"),
        ({"name": "a", "flag": 1}, "'flag' must be boolean"),
        ({}, "missing required argument 'name'"),
        ([1, 2], "args must be a JSON object"),
    ],
)
def test_bad_args_are_invalid_args(args: Any, needle: str) -> None:
    registry = CommandRegistry([thing_set])
    with pytest.raises(CommandError) as info:
        registry.validate_args(thing_set, args)
    assert info.value.code == "invalid_args"
    assert needle in info.value.message


def test_command_error_codes_are_a_closed_set() -> None:
    err = CommandError("not_found", "no campaign 'x'", {"campaign": "x"})
    assert err.to_dict() == {
        "code": "not_found",
        "message": "no campaign 'x'",
        "details": {"campaign": "x"},
    }
    with pytest.raises(ValueError):
        CommandError("oops", "not a code")
