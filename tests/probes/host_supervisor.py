"""host_supervisor OUT_DIR: a minimal supervisor, run ON THE HOST as its own
process by the supervisor-death tests.

It starts one sandbox whose command leaves a double-forked daemon behind (the
daemon rewrites OUT_DIR/hb every 20 ms) and stays alive itself, prints
{"pid": <host pid of the sandbox>} and then sleeps until it is killed."""
import json
import os
import sys
import time

import sandbox

PROBES = os.path.dirname(os.path.abspath(__file__))


def main(out_dir):
    config = sandbox.Config.create(binds=[f"{PROBES}:/probes", f"{out_dir}:/out:rw"])
    box = sandbox.spawn(["python3", "-B", "/probes/daemon.py", "/out/hb", "--stay"], config,
                        stdin=sandbox.DEVNULL, stdout=sandbox.DEVNULL, stderr=sandbox.DEVNULL)
    print(json.dumps({"pid": box.pid}), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1])
