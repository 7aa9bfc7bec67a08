"""Spawning detached service processes and stopping them safely (Linux /proc based)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def spawn(argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """Start `argv` in its own session (own process group), output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the CLI exiting; `down` signals the whole group
        )
    return proc


def port_free(host: str, port: int) -> bool:
    """True when nothing is bound to host:port (a bind test, so it also catches non-listening sockets)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers, like servers do
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def cmdline(pid: int) -> list[str] | None:
    """argv of a live process, or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0") if raw else None


def start_ticks(pid: int) -> int | None:
    """Process start time in clock ticks since boot (field 22 of /proc/<pid>/stat): a pid-reuse guard."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name in (...) may contain spaces
    return None if fields[0] == "Z" else int(fields[19])


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    return start_ticks(pid) is not None


def owns(pid: int, argv: Sequence[str], ticks: int | None) -> bool:
    """The pid is still the process we started: same start time and argv (the interpreter may be prepended)."""
    cmd = cmdline(pid)
    if cmd is None or (ticks is not None and start_ticks(pid) != ticks):
        return False
    tail = list(argv[1:])
    return cmd[len(cmd) - len(tail):] == tail and any(Path(c).name == Path(argv[0]).name for c in cmd)


def reap(pid: int) -> None:
    """Collect the exit status if `pid` is our child (it is when `up` runs in this process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM the process group led by `pid`, wait up to `timeout`, then SIGKILL it. True if it was alive."""
    if not alive(pid):
        reap(pid)
        return False
    try:
        group = os.getpgid(pid) == pid  # we started it with its own session, so it leads its group
    except ProcessLookupError:
        return False

    def send(sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig) if group else os.kill(pid, sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap(pid)
        if not alive(pid):
            break
        time.sleep(0.1)
    send(signal.SIGKILL)  # also takes down children that outlived the leader (e.g. mlflow's uvicorn)
    for _ in range(50):
        reap(pid)
        if not alive(pid):
            break
        time.sleep(0.1)
    return True


def rss_mb(pid: int) -> float:
    """Resident memory of the process group led by `pid` (leader plus its children), in MiB."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid:  # field 5: process group id
            total += int(fields[21])  # field 24: rss in pages
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20
