"""The one table of kernel numbers the probes need (x86_64 only).

Probes run inside the sandbox, where the `sandbox` package is not importable,
so they cannot ask its C core for constants.  Every number lives here and
nowhere else.  Sources:

  SYSCALLS      <asm/unistd_64.h>  (linux-libc-dev; /usr/include/x86_64-linux-gnu/asm)
  CLONE_*       <linux/sched.h>
  KEY_SPEC_*, KEYCTL_*   <linux/keyctl.h>
  UFFD_USER_MODE_ONLY    <linux/userfaultfd.h>
  PTRACE_*      <linux/ptrace.h>
  KCMP_FILE     <linux/kcmp.h>
  BPF_*         <linux/bpf.h> (enum bpf_cmd)
  PERF_*        <linux/perf_event.h>
  OPEN_TREE_CLONE        <linux/mount.h>
  PR_*, SECBIT_*         <linux/prctl.h>, <linux/securebits.h>
  NETLINK_*     <linux/netlink.h> (the ones the socket module lacks)

tests/kernel/test_isolation_probes.py checks every syscall number against
libseccomp's table, and the flags against the sandbox's C core, python-prctl
and pyroute2 on the host, so a typo here fails a test instead of silently
probing the wrong thing.
"""

SYSCALLS = {
    "ptrace": 101,
    "syslog": 103,
    "pivot_root": 155,
    "chroot": 161,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "init_module": 175,
    "delete_module": 176,
    "clock_settime": 227,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "perf_event_open": 298,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "setns": 308,
    "process_vm_readv": 310,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsmount": 432,
    "pidfd_open": 434,
    "clone3": 435,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
    "clone": 56,
}

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEW_FLAGS = {
    "user": CLONE_NEWUSER, "mnt": CLONE_NEWNS, "cgroup": CLONE_NEWCGROUP, "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC, "pid": CLONE_NEWPID, "net": CLONE_NEWNET,
}

KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_SESSION_KEYRING = -3
KEYCTL_GET_KEYRING_ID = 0

UFFD_USER_MODE_ONLY = 1

PTRACE_ATTACH = 16

KCMP_FILE = 0

BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_TASK_CLOCK = 1
PERF_ATTR_SIZE = 128             # PERF_ATTR_SIZE_VER8
PERF_ATTR_FLAGS_OFFSET = 40      # the u64 of bitfields after sample_type/read_format
PERF_FLAG_EXCLUDE_KERNEL = 1 << 5
PERF_FLAG_EXCLUDE_HV = 1 << 6

OPEN_TREE_CLONE = 1

NETLINK_SOCK_DIAG = 4
NETLINK_AUDIT = 9
NETLINK_NETFILTER = 12
NETLINK_KOBJECT_UEVENT = 15
NETLINK_GENERIC = 16

PR_GET_PDEATHSIG = 2
PR_GET_SECUREBITS = 27
SECBIT_NOROOT = 1 << 0
SECBIT_NOROOT_LOCKED = 1 << 1
SECBIT_NO_SETUID_FIXUP_LOCKED = 1 << 3
SECBIT_KEEP_CAPS_LOCKED = 1 << 5
SECBIT_NO_CAP_AMBIENT_RAISE = 1 << 6
SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 7
