"""fd_escape: try to leave the root through descriptors and the cwd
(catalogue #2, #31, #33) and print what was reachable.

For every open descriptor: its readlink target and kind; for directories,
fchdir into it, getcwd, and climb ".." with openat until it stops moving,
recording whether that top is this sandbox's "/".  For the rest, openat(fd,
"..") must fail.  Also: getcwd, ".." from "/", /proc/self/{root,cwd}."""
import os
import stat

import probelib as P


def _kind(mode):
    for name, test in (("dir", stat.S_ISDIR), ("chr", stat.S_ISCHR), ("fifo", stat.S_ISFIFO),
                       ("sock", stat.S_ISSOCK), ("reg", stat.S_ISREG), ("blk", stat.S_ISBLK)):
        if test(mode):
            return name
    return "other"


def _id(st):
    return [st.st_dev, st.st_ino]


def climb(start_fd):
    """openat("..") until the directory stops changing -> (steps, top id)."""
    cur = os.dup(start_fd)
    try:
        for steps in range(256):
            up = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=cur)
            same = _id(os.fstat(up)) == _id(os.fstat(cur))
            os.close(cur)
            cur = up
            if same:
                return steps, _id(os.fstat(cur)), sorted(os.listdir(cur))
        return steps, None, None
    finally:
        os.close(cur)


def main():
    root = _id(os.stat("/"))
    home = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    report = {"root": root, "fds": {}}
    try:
        report["cwd"] = os.getcwd()
    except OSError as exc:
        report["cwd"] = P.errname(exc.errno)
    steps, top, listing = climb(home)
    report["cwd_climb"] = {"top_is_root": top == root, "listing": listing}
    report["proc_self_root"] = os.readlink("/proc/self/root")
    report["proc_self_cwd"] = os.readlink("/proc/self/cwd")
    report["slash_dotdot_is_slash"] = _id(os.stat("/..")) == root and _id(os.stat("/../../..")) == root
    os.chdir("/")
    os.chdir("../../..")
    report["chdir_up_from_slash_is_slash"] = _id(os.stat(".")) == root
    for fd, link in P.open_fds().items():
        if fd == home:
            continue
        entry = {"link": link}
        try:
            st = os.fstat(fd)
        except OSError as exc:
            entry["kind"] = P.errname(exc.errno)
            report["fds"][fd] = entry
            continue
        entry["kind"] = _kind(st.st_mode)
        if entry["kind"] == "chr":
            entry["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        if entry["kind"] == "dir":
            os.fchdir(fd)
            cwd = os.getcwd()
            _, top, listing = climb(fd)
            entry.update(cwd=cwd, top_is_root=top == root, top_listing=listing)
            os.fchdir(home)
        else:
            entry["dotdot"] = P.try_call(lambda fd=fd: os.close(os.open("..", os.O_RDONLY, dir_fd=fd)))
        report["fds"][fd] = entry
    os.close(home)
    P.emit(report)


if __name__ == "__main__":
    main()
