"""Capabilities and identity: the child empties every capability set, locks the
securebits, sets no_new_privs and becomes an unprivileged uid/gid.

The work happens in the C child (drop_privileges in csrc/sandbox_core.c); this
module plans it and reads the result back for tests and `sandbox doctor`.
"""
from __future__ import annotations

from dataclasses import dataclass

import prctl

from .config import Config
from .host import HostFeatures
from .namespaces import NamespacePlan


@dataclass(frozen=True)
class CapabilityPlan:
    drop: bool
    no_new_privs: bool
    uid: int            # inside the sandbox (== host uid when there is no user namespace)
    gid: int
    set_groups: bool    # setgroups(0, NULL): allowed unless an unprivileged userns denied it
    last_cap: int


def plan_capabilities(config: Config, host: HostFeatures, ns: NamespacePlan) -> CapabilityPlan:
    uid, gid = (config.uid, config.gid) if ns.user_ns else (ns.host_uid, ns.host_gid)
    return CapabilityPlan(
        drop=config.enabled("caps"),
        no_new_privs=config.enabled("no_new_privs"),
        uid=uid,
        gid=gid,
        set_groups=not ns.deny_setgroups and (ns.user_ns or host.privileged),
        last_cap=host.last_cap,
    )


def supervisor_can_set_no_new_privs() -> bool:
    """Whether prctl works here at all (python-prctl reads the current state)."""
    try:
        prctl.get_no_new_privs()
        return True
    except (OSError, AttributeError):
        return False
