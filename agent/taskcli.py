"""`vigil tasks list|show|wait|cancel`, and `wait_for_task` for every command that starts a task (`--wait`).

Waiting polls `GET /api/v1/tasks/{id}`: on a terminal it redraws one progress bar line (log lines
scroll above it); otherwise it prints a plain line per change, which reads well in a CI log or journald.
The progress goes to stderr so that `--json` output on stdout stays clean.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import urllib.parse
from abc import ABC, abstractmethod
from typing import Any, Protocol, TextIO

STATUSES = ("pending", "running", "completed", "failed", "cancelled", "interrupted")
FINISHED = frozenset({"completed", "failed", "cancelled", "interrupted"})
POLL_INTERVAL = 0.5


class _Client(Protocol):
    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...


class TaskWaitTimeout(Exception):
    """The task did not finish within the time the caller gave it (it keeps running)."""


def add_commands(sub: Any, add_client: Any) -> None:
    tasks = sub.add_parser("tasks", help="follow and cancel long operations (tasks)")
    tasks_sub = tasks.add_subparsers(dest="tasks_command", required=True)
    lst = tasks_sub.add_parser("list", help="tasks, newest first")
    add_client(lst)
    lst.add_argument("--status", choices=STATUSES)
    lst.add_argument("--type", help="only tasks of this type")
    lst.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    for verb, text in (("show", "one task: steps, log lines, result"),
                       ("wait", "follow a task until it ends (exit status 0 only if it completed)"),
                       ("cancel", "cancel a pending or running task")):
        p = tasks_sub.add_parser(verb, help=text)
        add_client(p)
        p.add_argument("id")
        if verb == "wait":
            p.add_argument("--timeout", type=float, help="give up waiting after this many seconds (exit 1)")


def add_wait_flag(p: argparse.ArgumentParser) -> None:
    """`--wait` for a command that starts a task; use `follow` on the 202 answer."""
    p.add_argument("--wait", action="store_true",
                   help="follow the task until it ends: a progress bar on a terminal, plain lines otherwise")


def exit_code(task: dict[str, Any]) -> int:
    return 0 if task["status"] == "completed" else 1


def follow(client: _Client, accepted: dict[str, Any], wait: bool, raw: bool = False,
           timeout: float | None = None) -> int:
    """What a command that started a task prints: the task id, or with `wait` the task once it ended."""
    task_id = accepted["task_id"]
    if not wait:
        if raw:
            print(json.dumps(accepted, indent=2))
        else:
            print(f"started {accepted['type']} task {task_id}; follow it with `vigil tasks wait {task_id}`")
        return 0
    try:
        task = wait_for_task(client, task_id, timeout=timeout)
    except KeyboardInterrupt:
        print(f"\nstopped waiting; task {task_id} goes on (`vigil tasks cancel {task_id}` cancels it)",
              file=sys.stderr)
        return 130
    except TaskWaitTimeout as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 1
    if raw:
        print(json.dumps(task, indent=2))
    else:
        print(render(task))
    return exit_code(task)


def wait_for_task(client: _Client, task_id: str, *, out: TextIO | None = None, interval: float = POLL_INTERVAL,
                  timeout: float | None = None) -> dict[str, Any]:
    """Poll the task until it has finished and return it (the API's task object). Progress is drawn on
    `out` (default stderr): a bar when it is a terminal, a line per change otherwise. Raises
    TaskWaitTimeout after `timeout` seconds; the client's errors (unknown id, agent gone) pass through."""
    stream = out or sys.stderr
    view = _BarView(stream) if stream.isatty() else _LineView(stream)
    path = f"/api/v1/tasks/{urllib.parse.quote(task_id, safe='')}"
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            task = client.call("GET", path)["data"]
            view.update(task)
            if task["status"] in FINISHED:
                return dict(task)
            if deadline is not None and time.monotonic() >= deadline:
                raise TaskWaitTimeout(f"task {task_id} is still {task['status']} after {timeout:g}s; it goes on")
            time.sleep(interval if deadline is None else max(min(interval, deadline - time.monotonic()), 0.0))
    finally:
        view.close()


class _View(ABC):
    """How a waiting command shows a task: a bar on a terminal, plain lines otherwise."""

    def __init__(self, out: TextIO):
        self.out = out
        self.seen_lines = 0  # log lines printed so far, counted from the task's first line

    def new_log_lines(self, task: dict[str, Any]) -> list[str]:
        lines = task.get("logs") or []
        first = task.get("logs_dropped", 0)  # the index of lines[0] among all the task's lines
        fresh = [f"  {line['line']}" for i, line in enumerate(lines) if first + i >= self.seen_lines]
        self.seen_lines = first + len(lines)
        return fresh

    @abstractmethod
    def update(self, task: dict[str, Any]) -> None:
        """Show the task's latest state."""

    def close(self) -> None:  # noqa: B027 (a view that keeps nothing on screen has nothing to finish)
        """Finish the display (the bar view ends its line)."""


def _current_step(task: dict[str, Any]) -> str | None:
    return next((s["name"] for s in task.get("steps", []) if s["status"] == "running"), None)


def _describe(task: dict[str, Any]) -> str:
    parts = [f"{task['status']} {task['progress'] * 100:3.0f}%"]
    step = _current_step(task)
    if step:
        parts.append(f"[{step}]")
    if task.get("message"):
        parts.append(task["message"])
    return " ".join(parts)


class _LineView(_View):
    """A line whenever status, step or message changes, or progress passes another tenth."""

    def __init__(self, out: TextIO):
        super().__init__(out)
        self.last: tuple[Any, ...] | None = None

    def update(self, task: dict[str, Any]) -> None:
        for line in self.new_log_lines(task):
            print(line, file=self.out)
        state = (task["status"], _current_step(task), task.get("message"), int(task["progress"] * 10))
        if state != self.last:
            self.last = state
            print(f"{task['id']} {task['type']}: {_describe(task)}", file=self.out, flush=True)


class _BarView(_View):
    """One line redrawn in place: `[#####.....]  50% running [step] message`."""

    def __init__(self, out: TextIO):
        super().__init__(out)
        self.drawn = False

    def update(self, task: dict[str, Any]) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        fresh = self.new_log_lines(task)
        if fresh:
            self._clear()
            for line in fresh:
                print(line[:width], file=self.out)
        bar_width = 30
        filled = round(task["progress"] * bar_width)
        text = f"[{'#' * filled}{'.' * (bar_width - filled)}] {_describe(task)}"
        self.out.write("\r" + text[: width - 1].ljust(width - 1))
        self.out.flush()
        self.drawn = True

    def _clear(self) -> None:
        if self.drawn:
            width = shutil.get_terminal_size((80, 24)).columns
            self.out.write("\r" + " " * (width - 1) + "\r")
            self.drawn = False

    def close(self) -> None:
        if self.drawn:
            self.out.write("\n")
            self.out.flush()
            self.drawn = False


def render(task: dict[str, Any]) -> str:
    took = f", took {task['duration_seconds']:.1f}s" if task.get("duration_seconds") is not None else ""
    lines = [f"{task['id']} {task['type']}: {task['status']} {task['progress'] * 100:.0f}%"
             f" (created {task['created_at']} by {task.get('created_by') or '-'}{took})"]
    if task.get("cancel_requested") and task["status"] not in FINISHED:
        lines.append("  cancel requested; the work is unwinding")
    if task.get("message"):
        lines.append(f"  {task['message']}")
    if task.get("estimated_completion") and task["status"] not in FINISHED:
        lines.append(f"  estimated completion {task['estimated_completion']}")
    if task.get("error"):
        lines.append(f"  error: {task['error']}")
    if task.get("steps"):
        lines.append("  steps:")
        for step in task["steps"]:
            error = f": {step['error']}" if step.get("error") else ""
            lines.append(f"    {step['status']:<11} {step['name']}{error}")
    if task.get("result") is not None:
        lines.append("  result: " + json.dumps(task["result"], indent=2).replace("\n", "\n  "))
    if task.get("logs"):
        dropped = task.get("logs_dropped", 0)
        lines.append("  log:" + (f" ({dropped} earlier lines dropped)" if dropped else ""))
        lines.extend(f"    {line['at']}  {line['line']}" for line in task["logs"])
    return "\n".join(lines)


def run(client: _Client, args: argparse.Namespace) -> int:
    command = args.tasks_command
    if command == "list":
        query = {"limit": str(args.limit)}
        if args.status:
            query["status"] = args.status
        if args.type:
            query["type"] = args.type
        data = client.call("GET", "/api/v1/tasks?" + urllib.parse.urlencode(query))["data"]
        if args.json:
            print(json.dumps(data, indent=2))
            return 0
        print(f"{'ID':<22} {'TYPE':<16} {'STATUS':<11} {'PROGRESS':>8}  {'CREATED':<21} BY")
        for t in data["tasks"]:
            print(f"{t['id']:<22} {t['type'][:16]:<16} {t['status']:<11} {t['progress'] * 100:>7.0f}%  "
                  f"{t['created_at']:<21} {t.get('created_by') or '-'}")
        summary = ", ".join(f"{n} {s}" for s, n in data["summary"].items() if n)
        print(f"{data['pagination']['total']} tasks" + (f"; all {args.type + ' ' if args.type else ''}tasks by status:"
                                                        f" {summary}" if summary else ""))
        return 0
    task_id = urllib.parse.quote(args.id, safe="")
    if command == "cancel":
        task = client.call("DELETE", f"/api/v1/tasks/{task_id}")["data"]
        if args.json:
            print(json.dumps(task, indent=2))
        elif task["status"] in FINISHED:
            print(f"{task['id']} {task['type']}: {task['status']}")
        else:
            print(f"{task['id']} {task['type']}: cancel requested; still {task['status']} while its work unwinds")
        return 0
    if command == "wait":
        return follow(client, {"task_id": args.id, "type": "", "status": ""}, True, args.json, args.timeout)
    task = client.call("GET", f"/api/v1/tasks/{task_id}")["data"]
    print(json.dumps(task, indent=2) if args.json else render(task))
    return 0
