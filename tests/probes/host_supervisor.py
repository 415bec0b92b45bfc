"""host_supervisor OUT_DIR [--daemons N] [--from-thread] [--disable LAYER]...: a minimal
supervisor, run ON THE HOST as its own process by the supervisor-death tests.

It starts one sandbox whose pid 1 leaves N double-forked daemons behind (each
rewrites OUT_DIR/hb<i> every 20 ms) and stays alive itself, prints
{"pid": <host pid of the sandbox>} and sleeps until it is killed.  With
--from-thread the sandbox is spawned from a worker thread that then exits
(PR_SET_PDEATHSIG fires on the parent *thread*'s exit: the sandbox must
survive that, and still die with the process).  --disable turns layers off
by name (e.g. cgroups, to take the cgroup reaper out of the picture)."""
import argparse
import json
import os
import threading
import time

import sandbox

PROBES = os.path.dirname(os.path.abspath(__file__))


def start(out_dir, daemons, disable):
    config = sandbox.Config.create(binds=[f"{PROBES}:/probes", f"{out_dir}:/out:rw"], disable=disable)
    script = ("import subprocess, sys, time\n"
              f"for i in range({daemons}):\n"
              "    subprocess.run([sys.executable, '-B', '/probes/daemon.py', f'/out/hb{i}'], check=True,"
              " stdout=subprocess.DEVNULL)\n"
              "time.sleep(3600)\n")
    return sandbox.spawn(["python3", "-c", script], config,
                         stdin=sandbox.DEVNULL, stdout=sandbox.DEVNULL, stderr=sandbox.DEVNULL)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--daemons", type=int, default=1)
    parser.add_argument("--from-thread", action="store_true")
    parser.add_argument("--disable", action="append", default=[])
    args = parser.parse_args()
    if args.from_thread:
        holder = []
        worker = threading.Thread(target=lambda: holder.append(start(args.out_dir, args.daemons, args.disable)))
        worker.start()
        worker.join()
        box = holder[0]
    else:
        box = start(args.out_dir, args.daemons, args.disable)
    print(json.dumps({"pid": box.pid}), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
