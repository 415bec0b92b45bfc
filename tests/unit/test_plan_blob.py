"""The packed plan (csrc/plan_blob.c) that carries a sandbox's setup to the
shell program: a round trip keeps every field, every pointer field of the
structs is one the packer knows, and no corruption of a blob makes the
unpacker hand out a pointer outside it.  Pure: no clone, no root needed."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sandbox
from sandbox._core import ffi, lib
from sandbox.plan import encoded_plan

# The pointer fields plan_blob.c packs.  A new pointer field in either struct
# must be added there (and here), or the shell would get a meaningless address.
PACKED_PLAN_POINTERS = {"cgroup_procs_fds", "staging_dir", "root_data", "ops", "ro_paths", "hostname", "rlimits",
                        "fd_map", "cwd", "bpf", "exec_paths", "argv", "envp"}
PACKED_OP_POINTERS = {"source", "path", "fstype", "data"}


def pointer_fields(ctype: str) -> set[str]:
    return {name for name, field in ffi.typeof(ctype).fields if field.type.kind == "pointer"}


def test_every_pointer_field_is_packed():
    assert pointer_fields("struct sbx_plan") == PACKED_PLAN_POINTERS
    assert pointer_fields("struct sbx_op") == PACKED_OP_POINTERS


def pack(plan) -> bytearray:
    size = lib.sbx_plan_pack(plan, ffi.NULL, 0)
    buf = ffi.new("char[]", size + 8)
    # 8-byte alignment, as the shell's malloc gives it
    offset = (-int(ffi.cast("uintptr_t", buf))) % 8
    assert lib.sbx_plan_pack(plan, buf + offset, size) == size
    return bytearray(ffi.buffer(buf + offset, size))


def unpack(blob: bytearray):
    """(plan or NULL, the aligned buffer holding it, its address range)."""
    holder = ffi.new("char[]", len(blob) + 8)
    offset = (-int(ffi.cast("uintptr_t", holder))) % 8
    start = holder + offset
    ffi.memmove(start, bytes(blob), len(blob))
    base = int(ffi.cast("uintptr_t", start))
    return lib.sbx_plan_unpack(start, len(blob)), holder, (base, base + len(blob))


def strv(arr, n=None) -> list[str]:
    out, i = [], 0
    while (n is None and arr[i] != ffi.NULL) or (n is not None and i < n):
        out.append(ffi.string(arr[i]).decode())
        i += 1
    return out


@pytest.fixture(scope="module")
def real_plan():
    """A default sandbox's plan as the supervisor hands it over (with argv and
    fd_map filled in, which the pre-made path leaves out, to cover them too)."""
    encoded = encoded_plan(sandbox.Config().validated())
    plan, keep = encoded.for_prepare((41, 42, 43), -1)
    argv = [ffi.new("char[]", s) for s in (b"/bin/echo", b"hello")]
    c_argv = ffi.new("char *[]", argv + [ffi.NULL])
    fd_map = ffi.new("int[]", [0, 1, 2, 9])
    plan.argv, plan.fd_map, plan.n_fd_map = c_argv, fd_map, 4
    keep += [argv, c_argv, fd_map, encoded]
    return plan, keep


def test_round_trip_keeps_every_field(real_plan):
    plan, _ = real_plan
    out, _holder, _ = unpack(pack(plan))
    assert out != ffi.NULL
    for name, field in ffi.typeof("struct sbx_plan").fields:
        if field.type.kind != "pointer":
            assert getattr(out, name) == getattr(plan, name), name
    assert ffi.string(out.staging_dir) == ffi.string(plan.staging_dir)
    assert ffi.string(out.root_data) == ffi.string(plan.root_data)
    assert ffi.string(out.hostname) == ffi.string(plan.hostname)
    assert ffi.string(out.cwd) == ffi.string(plan.cwd)
    assert strv(out.ro_paths, out.n_ro_paths) == strv(plan.ro_paths, plan.n_ro_paths)
    assert strv(out.envp) == strv(plan.envp)
    assert strv(out.argv) == ["/bin/echo", "hello"]
    assert list(out.cgroup_procs_fds[0:3]) == [41, 42, 43]
    assert list(out.fd_map[0:4]) == [0, 1, 2, 9]
    assert ffi.buffer(out.bpf, out.bpf_len)[:] == ffi.buffer(plan.bpf, plan.bpf_len)[:]
    for i in range(plan.n_rlimits):
        assert (out.rlimits[i].resource, out.rlimits[i].soft, out.rlimits[i].hard) == \
               (plan.rlimits[i].resource, plan.rlimits[i].soft, plan.rlimits[i].hard)
    for i in range(plan.n_ops):
        a, b = out.ops[i], plan.ops[i]
        assert (a.kind, a.flags, a.mount_flags, a.attr_set, a.mode, a.data_len) == \
               (b.kind, b.flags, b.mount_flags, b.attr_set, b.mode, b.data_len)
        for name in ("source", "path", "fstype"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x == ffi.NULL) == (y == ffi.NULL) and (x == ffi.NULL or ffi.string(x) == ffi.string(y)), name
        if b.data != ffi.NULL:
            assert ffi.buffer(a.data, a.data_len)[:] == ffi.buffer(b.data, b.data_len)[:]


def test_truncated_or_misaligned_blobs_are_refused(real_plan):
    blob = pack(real_plan[0])
    for cut in (0, 8, len(blob) // 2, len(blob) - 1):
        out, _holder, _ = unpack(blob[:cut])
        assert out == ffi.NULL, cut
    holder = ffi.new("char[]", len(blob) + 16)
    odd = holder + (1 if int(ffi.cast("uintptr_t", holder)) % 8 == 0 else 0)
    ffi.memmove(odd, bytes(blob), len(blob))
    assert lib.sbx_plan_unpack(odd, len(blob)) == ffi.NULL


def pointers_of(plan):
    """Every (address, length that must be readable) the shell would use."""
    yield from ((plan.staging_dir, 1), (plan.root_data, 1), (plan.hostname, 1), (plan.cwd, 1))
    yield plan.bpf, plan.bpf_len
    yield plan.rlimits, ffi.sizeof("struct sbx_rlimit") * plan.n_rlimits
    yield plan.cgroup_procs_fds, ffi.sizeof("int") * plan.n_cgroup_procs_fds
    yield plan.fd_map, ffi.sizeof("int") * plan.n_fd_map
    yield plan.ops, ffi.sizeof("struct sbx_op") * plan.n_ops
    if plan.ops != ffi.NULL:
        for i in range(plan.n_ops):
            op = plan.ops[i]
            yield from ((op.source, 1), (op.path, 1), (op.fstype, 1), (op.data, op.data_len))
    for arr, n in ((plan.ro_paths, plan.n_ro_paths), (plan.exec_paths, plan.n_exec_paths),
                   (plan.argv, None), (plan.envp, None)):
        if arr != ffi.NULL:
            i = 0
            while (n is None or i < n) and arr[i] != ffi.NULL:
                yield arr[i], 1
                i += 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupt_blobs_never_point_outside(real_plan, data):
    blob = pack(real_plan[0])
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    out, _holder, (low, high) = unpack(blob)
    if out == ffi.NULL:
        return
    for pointer, length in pointers_of(out):
        if pointer == ffi.NULL:
            continue
        address = int(ffi.cast("uintptr_t", pointer))
        assert low <= address and address + max(length, 0) <= high
