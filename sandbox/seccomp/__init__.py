"""Seccomp: policy files in ``policies/`` -> validated model -> BPF, compiled early
in the parent, cached per policy text, installed last in the child with one
``seccomp(SECCOMP_SET_MODE_FILTER)`` call (by the C core, not here).

Public API::

    load_policy(name_or_path) -> CompiledPolicy   # .name .path .bpf .rules
                                                  # .default_action .instructions
    lint(policy) -> list[Finding]                 # policy: name, path, Policy or
                                                  # CompiledPolicy
    policy_dir() -> pathlib.Path                  # env SANDBOX_POLICY_DIR overrides

See docs/seccomp.md for the policy language.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import PolicyError
from .compiler import CompiledPolicy, cache_info, clear_cache, compile_file, pfc
from .linter import Finding, lint
from .model import Action, Comparison, Location, Policy, Rule

__all__ = [
    "Action", "CompiledPolicy", "Comparison", "Finding", "Location", "Policy", "Rule",
    "cache_info", "clear_cache", "lint", "load_policy", "pfc", "policy_dir", "policy_path",
    "available_policies",
]

POLICY_SUFFIX = ".policy"


def policy_dir() -> Path:
    """Where named policies live: $SANDBOX_POLICY_DIR, else <repo>/policies."""
    override = os.environ.get("SANDBOX_POLICY_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent.parent / "policies"


def available_policies() -> list[str]:
    directory = policy_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob(f"*{POLICY_SUFFIX}"))


def policy_path(name_or_path: str) -> Path:
    """A name (file stem in policy_dir()) or a path (contains '/' or ends in .policy)."""
    text = os.fspath(name_or_path)
    if os.sep in text or text.endswith(POLICY_SUFFIX):
        path = Path(text)
        if not path.is_file():
            raise PolicyError(f"{text}: no such policy file", field="policy")
        return path
    path = policy_dir() / f"{text}{POLICY_SUFFIX}"
    if not path.is_file():
        known = ", ".join(available_policies()) or "none"
        raise PolicyError(f"no policy named {text!r} in {policy_dir()} (available: {known})",
                          field="policy")
    return path


def load_policy(name_or_path: str) -> CompiledPolicy:
    """Resolve, compile and check a policy; repeated loads of unchanged text are cached."""
    path = policy_path(name_or_path)
    return compile_file(str(path))
