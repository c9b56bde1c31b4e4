"""Long operations as tracked tasks: id, status, progress, steps, log lines, cancel (see runner.py)."""

from agent.tasks.model import FINISHED, STATUSES, Task, TaskLogLine, TaskStatus, TaskStep
from agent.tasks.runner import (
    RunnerStopped,
    TaskCancelled,
    TaskContext,
    TaskFinished,
    TaskNotFound,
    TaskRunner,
    Work,
)

__all__ = [
    "FINISHED", "STATUSES", "RunnerStopped", "Task", "TaskCancelled", "TaskContext", "TaskFinished", "TaskLogLine",
    "TaskNotFound", "TaskRunner", "TaskStatus", "TaskStep", "Work",
]
