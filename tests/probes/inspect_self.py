"""inspect_self [--wait]: describe this process and its view of the system as
one JSON object (identity, namespaces, status fields, environment, fds, root
and /dev listings, visible pids, mounts, network interfaces, hostname).

With --wait it first prints {"ready": pid} and waits for a line on stdin, so
the host can look at it from outside while it is alive."""
import os
import socket
import stat
import sys

import probelib as P
import syscall_table as T

NAMESPACES = ("pid", "mnt", "net", "ipc", "uts", "user", "cgroup")


def _dev_entries():
    out = {}
    for name in sorted(os.listdir("/dev")):
        st = os.lstat(f"/dev/{name}")
        if stat.S_ISLNK(st.st_mode):
            out[name] = {"link": os.readlink(f"/dev/{name}")}
        elif stat.S_ISCHR(st.st_mode):
            out[name] = {"chr": [os.major(st.st_rdev), os.minor(st.st_rdev)]}
        else:
            out[name] = {"mode": oct(st.st_mode)}
    return out


def _net_dev():
    with open("/proc/net/dev") as f:
        return sorted(line.split(":", 1)[0].strip() for line in f.readlines()[2:])


def main():
    if "--wait" in sys.argv:
        P.emit({"ready": os.getpid()})
        sys.stdin.readline()
    P.emit({
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "uid": os.getresuid(),
        "gid": os.getresgid(),
        "groups": os.getgroups(),
        "ns": {ns: os.stat(f"/proc/self/ns/{ns}").st_ino for ns in NAMESPACES},
        "status": P.status_fields(),
        "hostname": socket.gethostname(),
        "uname_nodename": os.uname().nodename,
        "env": dict(os.environ),
        "fds": P.open_fds(),
        "cwd": os.getcwd(),
        "proc_pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "root": sorted(os.listdir("/")),
        "dev": _dev_entries(),
        "mounts": P.mountinfo(),
        "net_dev": _net_dev(),
        "proc_cgroup": open("/proc/self/cgroup").read().splitlines(),
        "tty_nr": int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[4]),
        "securebits": P.prctl(T.PR_GET_SECUREBITS),
        "pdeath_signal": P.prctl_get_int(T.PR_GET_PDEATHSIG),
        "max_user_namespaces": open("/proc/sys/user/max_user_namespaces").read().strip(),
    })


if __name__ == "__main__":
    main()
