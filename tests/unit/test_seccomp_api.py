"""Public API: policy names and paths, SANDBOX_POLICY_DIR, the compile cache."""
from __future__ import annotations

import pytest

from sandbox.errors import PolicyError
from sandbox.seccomp import (available_policies, cache_info, clear_cache, compiler, load_policy,
                             policy_dir)


@pytest.fixture
def counted_builds(monkeypatch):
    """Count how often the expensive libseccomp step runs."""
    calls = []
    real = compiler.build

    def build(policy):
        calls.append(policy.path)
        return real(policy)

    clear_cache()
    monkeypatch.setattr(compiler, "build", build)
    yield calls
    clear_cache()


def test_shipped_policies_are_found_by_name():
    assert {"default", "permissive"} <= set(available_policies())
    assert (policy_dir() / "default.policy").is_file()
    assert load_policy("default").path == str((policy_dir() / "default.policy").resolve())


def test_second_load_does_not_recompile(counted_builds):
    first = load_policy("default")
    second = load_policy("default")
    assert counted_builds == [first.path]
    assert second is first
    assert cache_info().hits >= 1


def test_cache_key_covers_included_files(tmp_path, monkeypatch, counted_builds):
    (tmp_path / "inc.policy").write_text("read: allow\n")
    (tmp_path / "mine.policy").write_text("default errno ENOSYS\n@include inc.policy\n")
    monkeypatch.setenv("SANDBOX_POLICY_DIR", str(tmp_path))
    first = load_policy("mine")
    assert load_policy("mine") is first and len(counted_builds) == 1
    (tmp_path / "inc.policy").write_text("read: allow\nwrite: allow\n")
    changed = load_policy("mine")
    assert len(counted_builds) == 2
    assert changed.digest != first.digest
    assert [r.syscall for r in changed.rules] == ["read", "write"]


def test_same_text_elsewhere_is_compiled_for_its_own_path(tmp_path, counted_builds):
    for name in ("a.policy", "b.policy"):
        (tmp_path / name).write_text("default allow\nmount: errno EPERM\n")
    a, b = load_policy(str(tmp_path / "a.policy")), load_policy(str(tmp_path / "b.policy"))
    assert a.path != b.path and a.bpf == b.bpf and len(counted_builds) == 2


def test_policy_dir_override_and_unknown_names(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_POLICY_DIR", str(tmp_path))
    assert policy_dir() == tmp_path
    assert available_policies() == []
    with pytest.raises(PolicyError, match="no policy named 'default'.*available: none"):
        load_policy("default")
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy(str(tmp_path / "missing.policy"))


def test_fragments_are_not_loadable_policies():
    # include files have no default line: loading one says so
    with pytest.raises(PolicyError, match="no 'default <action>' line"):
        load_policy(str(policy_dir() / "include" / "allow-base.policy"))
