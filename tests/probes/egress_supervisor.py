"""egress_supervisor: a minimal supervisor with egress sandboxes, run ON THE
HOST as its own process by the network supervisor-death test.

It starts two egress sandboxes that sleep (and, with pool_size 2, pre-makes
namespaces in the background), waits until the pool is full, prints
{"pids": [...], "table": ..., "janitor": ..., "links": [...]} and sleeps until
it is killed."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import netlab  # noqa: E402
import sandbox  # noqa: E402
from sandbox.supervisor import Supervisor  # noqa: E402


def main():
    sup = Supervisor(pool_size=2)
    config = sandbox.Config.create(net="egress", network={"allow": ["198.18.0.0/30:7000/tcp"], "rate_bytes": "1m"})
    boxes = [sandbox.spawn(["sleep", "3600"], config, stdin=sandbox.DEVNULL, supervisor=sup) for _ in range(2)]
    sup.network.settle()
    print(json.dumps({"pids": [b.pid for b in boxes], "table": sup.network.host.table,
                      "janitor": sup.network.host.janitor_pid, "links": netlab.leftovers()["links"]}), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
