"""The janitor of one supervisor's host table: started with the table, it
waits for end of file on its stdin, a pipe whose only write end the
supervisor holds (close-on-exec).  EOF comes when the supervisor closes it or
dies, however it dies (SIGKILL included); the janitor then deletes the table,
removes the address lock files nobody holds, and gives up the supervisor's
share of ip_forward (forwarding.py).

Run as a plain script (python -I -S janitor.py TABLE LOCK_DIR), standard
library only, in its own session: a terminal's ^C for the supervisor's group
does not reach it, and it never imports the sandbox package (small, quick)."""
import ctypes
import ctypes.util
import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's directory out
import forwarding  # noqa: E402
import locks  # noqa: E402

_TABLE = re.compile(r"^sandbox_[0-9]+_[0-9a-f]+$")


def delete_table(table: str) -> None:
    lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    ctx = lib.nft_ctx_new(0)
    try:
        lib.nft_ctx_buffer_error(ctx)  # "no such table" (already removed at close) stays quiet
        lib.nft_run_cmd_from_buffer(ctx, f"delete table inet {table}\n".encode())
    finally:
        lib.nft_ctx_free(ctx)


def main(argv) -> int:
    table, lock_dir = argv[1], argv[2]
    if not _TABLE.match(table):
        print(f"janitor: refusing table name {table!r}", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            if not os.read(0, 4096):
                break
        except InterruptedError:
            continue
    delete_table(table)
    locks.sweep(lock_dir)
    forwarding.release(None, lock_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
