"""Pure parsers for cgroup control files and /proc texts (unit-tested on samples)."""
from __future__ import annotations


def parse_int(text: str) -> int:
    """A single-value file: '123\\n' -> 123; 'max' -> -1 (unlimited)."""
    text = text.strip()
    return -1 if text == "max" else int(text)


def parse_keyed(text: str) -> dict[str, int]:
    """A flat-keyed file ('key value' per line): memory.events, cpu.stat,
    memory.oom_control, memory.stat.  Lines that are not 'key int' are skipped."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def parse_pids(text: str) -> list[int]:
    """cgroup.procs / tasks: one pid per line."""
    return [int(tok) for tok in text.split()]


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """/proc/<pid>/cgroup -> ({v1 controller: path}, v2 path or None).

    '4:memory:/a/b' -> {'memory': '/a/b'}; '1:cpu,cpuacct:/' -> both;
    named hierarchies ('name=systemd') are skipped; '0::/x' is the v2 path."""
    v1: dict[str, str] = {}
    v2 = None
    for line in text.splitlines():
        if not line.strip():
            continue
        hier_id, controllers, path = line.split(":", 2)
        if hier_id == "0" and controllers == "":
            v2 = path
            continue
        for ctrl in controllers.split(","):
            if ctrl and not ctrl.startswith("name="):
                v1[ctrl] = path
    return v1, v2


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str, str, frozenset[str]]]:
    """/proc/<pid>/mountinfo -> [(fstype, root, mount point, super options)] for
    cgroup and cgroup2 mounts only, in mount order."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 6 or len(fields) < sep + 4:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        superopts = frozenset(fields[sep + 3].split(","))
        mounts.append((fstype, root, mount_point, superopts))
    return mounts


def relative_to_mount(own: str, mount_root: str) -> str | None:
    """The part of cgroup path `own` below a mount whose root is `mount_root`
    ('' for the mount root itself), or None if `own` is not visible there."""
    own = own.rstrip("/") or "/"
    mount_root = mount_root.rstrip("/") or "/"
    if mount_root == "/":
        return own.lstrip("/")
    if own == mount_root:
        return ""
    if own.startswith(mount_root + "/"):
        return own[len(mount_root) + 1:]
    return None
