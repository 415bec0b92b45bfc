"""fs_probe COMMAND ARGS...: filesystem checks from inside, one JSON object out.

  create DIR...      try to create a new file in each DIR      -> {DIR: errno name}
  open_write FILE... try open(FILE, O_WRONLY) (no create)      -> {FILE: errno name}
  write FILE DATA    try to open FILE write-only and write DATA -> {"open": .., "write": ..}
  exists PATH...     lexists each PATH                          -> {PATH: bool}
  read PATH...       read up to 64 KiB                          -> {PATH: {"len": n, "head": ..} | errno}
  listdir PATH...    directory listing                          -> {PATH: [names] | errno}
  fill DIR           write 1 MiB chunks into DIR until an error -> {"written": n, "errno": .., "total": ..}
"""
import os
import sys

import probelib as P


def create(paths):
    out = {}
    for d in paths:
        out[d] = P.try_call(lambda d=d: os.close(os.open(os.path.join(d, ".sbx-probe-created"),
                                                          os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)))
    return out


def open_write(paths):
    return {p: P.try_call(lambda p=p: os.close(os.open(p, os.O_WRONLY))) for p in paths}


def write(path, data):
    out = {"open": "OK", "write": "not tried"}
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        out["open"] = P.errname(exc.errno)
        return out
    try:
        os.write(fd, data.encode())
        out["write"] = "OK"
    except OSError as exc:
        out["write"] = P.errname(exc.errno)
    finally:
        os.close(fd)
    return out


def read(paths):
    out = {}
    for p in paths:
        try:
            with open(p, "rb") as f:
                data = f.read(65536)
            out[p] = {"len": len(data), "head": data[:200].decode(errors="replace")}
        except OSError as exc:
            out[p] = P.errname(exc.errno)
    return out


def listdir(paths):
    out = {}
    for p in paths:
        try:
            out[p] = sorted(os.listdir(p))
        except OSError as exc:
            out[p] = P.errname(exc.errno)
    return out


def fill(directory):
    chunk = b"\xa5" * (1 << 20)
    written, err = 0, "none"
    st = os.statvfs(directory)
    with open(os.path.join(directory, "fill"), "wb", buffering=0) as f:
        while written < (1 << 34):
            try:
                written += f.write(chunk)
            except OSError as exc:
                err = P.errname(exc.errno)
                break
    return {"written": written, "errno": err, "total": st.f_blocks * st.f_frsize}


def main(cmd, args):
    if cmd == "create":
        P.emit(create(args))
    elif cmd == "open_write":
        P.emit(open_write(args))
    elif cmd == "write":
        P.emit(write(args[0], args[1]))
    elif cmd == "exists":
        P.emit({p: os.path.lexists(p) for p in args})
    elif cmd == "read":
        P.emit(read(args))
    elif cmd == "listdir":
        P.emit(listdir(args))
    elif cmd == "fill":
        P.emit(fill(args[0]))
    else:
        sys.exit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
