"""Peer credentials of an admin-socket connection and their role from ``[admin.roles]``.

The kernel vouches for the peer's uid/gid/pid (SO_PEERCRED); the user's name, primary
group and every supplementary group are matched against the role mappings and the
highest matching role wins::

    pid, uid, gid = peer_credentials(raw_socket)
    caller = resolve_caller(pid, uid, gid, app.config.admin.roles)
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from collections.abc import Iterable, Mapping
from typing import Protocol

from promod.admin.registry import Caller, Role

__all__ = ["RoleMappingLike", "group_names", "peer_credentials", "resolve_caller", "user_name"]

_UCRED = struct.Struct("3i")


class RoleMappingLike(Protocol):
    """What is read from ``config.admin.roles[ROLE]`` (promod.config.RoleMapping)."""

    @property
    def users(self) -> Iterable[str]: ...

    @property
    def groups(self) -> Iterable[str]: ...


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a connected AF_UNIX socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def group_names(user: str | None, gid: int) -> set[str]:
    """Names of the primary group ``gid`` and of every group ``user`` belongs to."""
    gids = {gid}
    if user is not None:
        try:
            gids.update(os.getgrouplist(user, gid))
        except OSError:
            pass
    return {name for name in map(_group_name, gids) if name is not None}


def resolve_caller(
    pid: int, uid: int, gid: int, roles: Mapping[str, RoleMappingLike] | None
) -> Caller:
    """The :class:`Caller` for these credentials; role ``None`` when nothing maps them."""
    name = user_name(uid)
    groups = group_names(name, gid)
    users = {str(uid)} | ({name} if name is not None else set())
    best: Role | None = None
    for role_name, mapping in (roles or {}).items():
        try:
            role = Role.parse(role_name)
        except ValueError:
            continue
        if users & set(mapping.users) or groups & set(mapping.groups):
            if best is None or role > best:
                best = role
    return Caller(uid=uid, gid=gid, pid=pid, user=name if name is not None else str(uid), role=best)
