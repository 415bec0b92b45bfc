"""Helpers for the `sandbox serve` tests (test_http_*.py): a credentials
file, a server process started and stopped as an operator would, and an
in-process server for a module fixture."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass, field

from conftest import REAL_PYTHON

ADMIN, ADMIN_SECRET = "AKIAADMIN00000000001", "admin-secret"
OTHER, OTHER_SECRET = "AKIAOTHER00000000001", "other-secret"
ADMIN_PRINCIPAL = "arn:aws:iam::123456789012:user/admin"
OTHER_PRINCIPAL = "arn:aws:iam::444455556666:user/mallory"
MEMORY = 1769          # one full vCPU's worth in Lambda: cold starts are not CPU-starved
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def write_credentials(path) -> str:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        json.dump({ADMIN: {"secret": ADMIN_SECRET, "principal": ADMIN_PRINCIPAL},
                   OTHER: {"secret": OTHER_SECRET, "principal": OTHER_PRINCIPAL}}, f)
    return str(path)


@dataclass
class Served:
    """A `sandbox serve` process: its URL and what it printed before listening."""
    process: subprocess.Popen
    url: str = ""
    output: str = ""
    lines: list = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, sig=signal.SIGTERM, timeout=60) -> int:
        """Signal it and wait; returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self.process.stderr.close()


def start_serve(*args, cwd=ROOT) -> Served:
    """`python -m sandbox serve --port 0 ARGS...`; returns once it listens,
    or once it exited (then .process.returncode is set and .output says why)."""
    process = subprocess.Popen([REAL_PYTHON, "-m", "sandbox", "serve", "--port", "0", *args], cwd=cwd,
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    served = Served(process)
    while True:
        line = process.stderr.readline()
        if not line:
            process.wait(30)
            return served
        served.output += line
        found = re.search(r"listening on (\S+)", line)
        if found:
            served.url = found.group(1)
            # Keep reading stderr so the server never blocks on a full pipe.
            threading.Thread(target=_drain, args=(process.stderr, served.lines), daemon=True).start()
            return served


def _drain(stream, sink) -> None:
    try:
        for line in stream:
            sink.append(line)
    except (OSError, ValueError):
        pass
