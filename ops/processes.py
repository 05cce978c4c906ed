"""Small process and port helpers shared by the embedded servers, the tests, the bench and chaos."""

from __future__ import annotations

import socket
from pathlib import Path


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """Direct children of a process, read from /proc (field 4 of /proc/N/stat is the parent id)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def process_tree(pid: int) -> list[int]:
    """The process and all of its descendants, parents first."""
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children_of(parent)]
        tree.extend(frontier)
    return tree
