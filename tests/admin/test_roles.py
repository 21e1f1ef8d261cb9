"""Peer credentials and the mapping of users and groups to roles."""

from __future__ import annotations

import grp
import os
import pwd
import socket

from promod.admin.registry import Role
from promod.admin.roles import peer_credentials, resolve_caller
from promod.config import RoleMapping

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def roles(**mapping: RoleMapping) -> dict[str, RoleMapping]:
    return mapping


def test_peer_credentials_are_the_connecting_process() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_credentials(left) == (os.getpid(), os.getuid(), os.getgid())


def test_user_mapped_by_name() -> None:
    caller = resolve_caller(1, os.getuid(), os.getgid(), roles(viewer=RoleMapping(users=(ME,))))
    assert caller.user == ME and caller.role is Role.VIEWER
    assert (caller.pid, caller.uid, caller.gid) == (1, os.getuid(), os.getgid())


def test_user_mapped_by_group() -> None:
    caller = resolve_caller(
        1, os.getuid(), os.getgid(), roles(operator=RoleMapping(groups=(MY_GROUP,)))
    )
    assert caller.role is Role.OPERATOR


def test_highest_matching_role_wins() -> None:
    mapping = roles(
        viewer=RoleMapping(users=(ME,)),
        admin=RoleMapping(groups=(MY_GROUP,)),
        operator=RoleMapping(users=(ME,)),
    )
    assert resolve_caller(1, os.getuid(), os.getgid(), mapping).role is Role.ADMIN


def test_unmapped_caller_has_no_role() -> None:
    mapping = roles(admin=RoleMapping(users=("someone-else",), groups=("no-such-group",)))
    assert resolve_caller(1, os.getuid(), os.getgid(), mapping).role is None
    assert resolve_caller(1, os.getuid(), os.getgid(), None).role is None


def test_uid_without_passwd_entry_is_named_by_number() -> None:
    uid = 4_000_123
    caller = resolve_caller(9, uid, uid, roles(viewer=RoleMapping(users=(str(uid),))))
    assert caller.user == str(uid) and caller.role is Role.VIEWER
