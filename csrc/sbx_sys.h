/* System headers and fallbacks shared by the C core and the cffi wrapper. */
#ifndef SBX_SYS_H
#define SBX_SYS_H
#define _GNU_SOURCE 1
#include <sched.h>
#include <sys/mount.h>      /* glibc >= 2.36: open_tree, move_mount, mount_setattr, MOUNT_ATTR_* */
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <linux/netlink.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#endif
