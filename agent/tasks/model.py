"""What a task is: the record an operator follows from submission to its end, in memory and in the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

TaskStatus = Literal["pending", "running", "completed", "failed", "cancelled", "interrupted"]
StepStatus = Literal["pending", "running", "completed", "failed", "cancelled", "interrupted"]

STATUSES: tuple[TaskStatus, ...] = ("pending", "running", "completed", "failed", "cancelled", "interrupted")
# A finished task never changes again (except being pruned once past retention).
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled", "interrupted"})


@dataclass
class TaskStep:
    name: str
    status: StepStatus = "pending"
    started_at: float | None = None
    completed_at: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "started_at": self.started_at,
                "completed_at": self.completed_at, "error": self.error}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskStep:
        return cls(data["name"], data.get("status", "pending"), data.get("started_at"), data.get("completed_at"),
                   data.get("error"))


@dataclass
class TaskLogLine:
    at: float
    line: str


@dataclass
class Task:
    id: str
    type: str
    status: TaskStatus
    created_at: float
    progress: float = 0.0
    message: str | None = None
    steps: list[TaskStep] = field(default_factory=list)
    logs: list[TaskLogLine] = field(default_factory=list)
    logs_dropped: int = 0  # lines that fell off the front of `logs` (it keeps only the last ones)
    result: dict[str, Any] | None = None
    error: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    created_by: str | None = None
    scope: str | None = None  # what a key needed to start it; cancelling needs the same
    cancel_requested: bool = False
    started_at: float | None = None
    estimated_completion: float | None = None
    completed_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def step(self, name: str) -> TaskStep | None:
        return next((s for s in self.steps if s.name == name), None)


def to_row(task: Task) -> dict[str, Any]:
    """The store's row for `task` (agent/store/tasks.py keeps it as plain columns)."""
    return {
        "id": task.id, "type": task.type, "status": task.status, "progress": task.progress,
        "message": task.message, "steps": [s.as_dict() for s in task.steps],
        "logs": [[line.at, line.line] for line in task.logs], "logs_dropped": task.logs_dropped,
        "result": task.result, "error": task.error, "params": task.params, "created_by": task.created_by,
        "scope": task.scope, "cancel_requested": task.cancel_requested, "created_at": task.created_at,
        "started_at": task.started_at, "estimated_completion": task.estimated_completion,
        "completed_at": task.completed_at,
    }


def from_row(row: dict[str, Any]) -> Task:
    return Task(
        id=row["id"], type=row["type"], status=row["status"], created_at=row["created_at"],
        progress=row["progress"], message=row["message"],
        steps=[TaskStep.from_dict(s) for s in row["steps"] or []],
        logs=[TaskLogLine(at, line) for at, line in row["logs"] or []], logs_dropped=row["logs_dropped"],
        result=row["result"], error=row["error"], params=row["params"] or {}, created_by=row["created_by"],
        scope=row["scope"], cancel_requested=bool(row["cancel_requested"]), started_at=row["started_at"],
        estimated_completion=row["estimated_completion"], completed_at=row["completed_at"],
    )
