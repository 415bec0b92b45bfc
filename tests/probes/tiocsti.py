"""tiocsti: push a character into the input queue of every open descriptor
and of /dev/tty with TIOCSTI, and try TIOCLINUX (catalogue #11)."""
import fcntl
import os
import termios

import probelib as P

TIOCLINUX_SUBCODE_GETSHIFTSTATE = b"\x06"


def main():
    report = {"TIOCSTI": {}, "TIOCLINUX": {}}
    for fd in sorted(P.open_fds()):
        report["TIOCSTI"][fd] = P.try_call(fcntl.ioctl, fd, termios.TIOCSTI, b"X")
        report["TIOCLINUX"][fd] = P.try_call(fcntl.ioctl, fd, termios.TIOCLINUX, TIOCLINUX_SUBCODE_GETSHIFTSTATE)
    report["isatty"] = {fd: os.isatty(fd) for fd in (0, 1, 2)}
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError as exc:
        report["dev_tty"] = P.errname(exc.errno)
    else:
        report["dev_tty"] = "OK"
        report["TIOCSTI"]["/dev/tty"] = P.try_call(fcntl.ioctl, tty, termios.TIOCSTI, b"X")
        os.close(tty)
    P.emit(report)


if __name__ == "__main__":
    main()
