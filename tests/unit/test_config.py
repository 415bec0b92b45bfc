"""Config validation: every bad field gets a precise ConfigError."""
import pytest

from sandbox.config import LAYERS, Bind, Config
from sandbox.errors import ConfigError


def test_defaults_are_finite_and_strict():
    c = Config().validated()
    assert c.memory_mb and c.pids and c.timeout_s and c.tmp_size_mb and c.max_file_mb and c.max_open_files
    assert c.disable == frozenset()
    assert all(c.enabled(layer) for layer in LAYERS)
    assert c.uid != 0 and c.gid != 0


@pytest.mark.parametrize("field,value", [
    ("memory_mb", 0), ("memory_mb", -5), ("memory_mb", "512"), ("memory_mb", True),
    ("cpus", 0), ("cpus", float("nan")), ("cpus", float("inf")),
    ("pids", 0), ("timeout_s", 0), ("timeout_s", float("inf")), ("tmp_size_mb", 0),
    ("max_open_files", 3), ("net", "host"), ("hostname", "bad host"), ("hostname", "-x"),
    ("cwd", "relative"), ("uid", 0), ("gid", 0), ("policy", ""),
])
def test_bad_fields_are_named(field, value):
    with pytest.raises(ConfigError) as info:
        Config(**{field: value}).validated()
    assert info.value.field == field
    assert field in str(info.value)


def test_unknown_layer_and_dependency():
    with pytest.raises(ConfigError, match="unknown layer"):
        Config.create(disable=["seccompp"])
    with pytest.raises(ConfigError, match="rootfs"):
        Config.create(disable=["mount"])
    assert not Config.create(disable=["mount", "rootfs"]).enabled("mount")


def test_env_validation():
    assert dict(Config.create(env={"A": "1"}).env) == {"A": "1"}
    for bad in ({"A=B": "1"}, {"1A": "x"}, {"A": "x\0y"}, {"": "x"}):
        with pytest.raises(ConfigError, match="env"):
            Config.create(env=bad)


def test_bind_parsing(tmp_path):
    assert Bind.parse("/a:/b") == Bind("/a", "/b", False)
    assert Bind.parse("/a:/b:rw") == Bind("/a", "/b", True)
    assert Bind.parse("/a:/b:ro") == Bind("/a", "/b", False)
    for bad in ("/a", "/a:/b:rx", "/a:/b:rw:x"):
        with pytest.raises(ConfigError, match="bind"):
            Bind.parse(bad)


@pytest.mark.parametrize("dest", ["/", "/proc", "/proc/sys", "/dev/x", "/etc", "/tmp", "/usr"])
def test_reserved_bind_destinations(tmp_path, dest):
    with pytest.raises(ConfigError, match="built by the sandbox"):
        Config.create(binds=[f"{tmp_path}:{dest}"])


def test_bind_sources_and_paths(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Config.create(binds=[f"{tmp_path}/missing:/data"])
    with pytest.raises(ConfigError, match="absolute"):
        Config.create(binds=["rel:/data"])
    with pytest.raises(ConfigError, match=r"\.\."):
        Config.create(binds=[f"{tmp_path}:/data/../etc"])
    with pytest.raises(ConfigError, match="share a destination"):
        Config.create(binds=[f"{tmp_path}:/data", f"{tmp_path}:/data/"])
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    assert Config.create(binds=[f"{link}:/data"]).binds[0].source == str(tmp_path)


def test_config_is_frozen_and_hashable():
    c = Config.create(env={"A": "1"}, binds=[])
    with pytest.raises(Exception):
        c.memory_mb = 1
    assert hash(c) == hash(Config.create(env={"A": "1"}))
