"""Hosts on a real network for the multi-host tests: network namespaces on a bridge (veth pairs), each with an
address of its own; this machine's services are reached from them over that network only. Needs root."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import uuid

AVAILABLE = os.geteuid() == 0 and bool(shutil.which("ip")) and bool(shutil.which("socat"))


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


class Network:
    """A bridge with this machine at .1 and one namespace per host at .2, .3, …: the hosts reach this machine's
    services (PostgreSQL through a forwarder, a Redis of the test's own) over their veth link only."""

    def __init__(self, hosts: list[str]):
        self.id = uuid.uuid4().hex[:4]
        self.net = f"10.222.{random.randint(1, 250)}"
        self.address = f"{self.net}.1"
        self.bridge = f"pob{self.id}"
        self.hosts = {h: (f"pon{self.id}{h}", f"pov{self.id}{h}", f"{self.net}.{i + 2}") for i, h in enumerate(hosts)}
        self.procs: list[subprocess.Popen] = []

    def up(self) -> "Network":
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.address}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for ns, veth, address in self.hosts.values():
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", veth, "master", self.bridge, "up")
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        return self

    def link(self, host: str, state: str) -> None:
        sh("ip", "link", "set", self.hosts[host][1], state)

    def serve(self, *cmd: str) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def down(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for ns, veth, _ in self.hosts.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def forward(self, port: int, to_port: int, to_host: str = "127.0.0.1") -> int:
        """This machine's service at to_host:to_port, reachable from the hosts at self.address:port."""
        self.serve("socat", f"TCP-LISTEN:{port},bind={self.address},fork,reuseaddr", f"TCP:{to_host}:{to_port}")
        return port

    def run_in(self, host: str, cmd: list[str], **popen) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.hosts[host][0], *cmd], **popen)


CELERY = ("-m", "celery", "-A", "pineops")  # `program` of start_on for a Celery worker or beat


def start_on(env, host: str, name: str, *args: str, program: tuple[str, ...] = ("manage.py",)) -> subprocess.Popen:
    """`manage.py *args` (or python `program` *args) on network namespace `host`, as host-<host> (its lock
    tokens), logging to <name>.log; kept in env.procs[name] and stopped with the environment."""
    from tests.e2e.appliance import ROOT

    log = (env.tmp / f"{name}.log").open("ab")
    proc = env.network.run_in(host, [sys.executable, *program, *args], cwd=ROOT, stdout=log,
                              env={**env.env, "PINEOPS_HOST_NAME": f"host-{host}"}, stderr=subprocess.STDOUT,
                              start_new_session=True)
    env.children.append(proc)
    env.procs[name] = proc
    return proc


def log_of(env, name: str) -> str:
    return (env.tmp / f"{name}.log").read_text(errors="replace")
