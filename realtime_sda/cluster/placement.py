"""Which avatar worker takes a new session: the one with the most free real-time capacity
(its sessions against the capacity it measured, not its CPU percentage). Pure functions of
the workers' reported loads, so every front door decides the same way without shared state;
the worker itself re-checks on admission (two front doors may pick it at once)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["WorkerLoad", "rank_workers", "BUSY_MESSAGE"]

#: what a page is told when every worker is at its real-time capacity
BUSY_MESSAGE = "busy: every avatar worker is at its real-time capacity; try again in a minute"


@dataclass(frozen=True)
class WorkerLoad:
    """One worker's load as it reported it: ``sessions`` open of ``capacity`` it can keep in
    real time. ``ready``: started and taking sessions."""

    name: str
    sessions: int
    capacity: int
    ready: bool = True
    node: str = ""

    @property
    def free(self) -> int:
        return max(self.capacity - self.sessions, 0) if self.ready else 0

    @classmethod
    def from_report(cls, name: str, report: Mapping[str, Any]) -> "WorkerLoad":
        """From a worker's ``load()`` answer."""
        return cls(name, int(report.get("sessions", 0)), int(report.get("capacity", 0)),
                   bool(report.get("ready", False)), str(report.get("node", "")))


def rank_workers(loads: Iterable[WorkerLoad]) -> list[WorkerLoad]:
    """The workers with free capacity, best first: most free sessions, then the least
    loaded fraction, then the name (a stable order for equal loads). Empty: all are busy."""
    free = [w for w in loads if w.free > 0]
    return sorted(free, key=lambda w: (-w.free, w.sessions / max(w.capacity, 1), w.name))
