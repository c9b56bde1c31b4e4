"""Tasks: the long operations other routes start with a 202 (cleanup, diagnostics, ...), followed and
cancelled here."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from pydantic import Field

from agent.api.errors import ApiError, ok
from agent.api.formats import iso
from agent.api.pagination import PageQuery, decode_cursor, pagination
from agent.api.routes import ROUTES
from agent.api.routing import parse_query
from agent.api.services import services
from agent.auth.roles import scopes_of
from agent.tasks import STATUSES, Task, TaskFinished, TaskNotFound, TaskStatus


def task_view(task: Task, logs: bool = True) -> dict[str, Any]:
    end = task.completed_at or time.time()
    view: dict[str, Any] = {
        "id": task.id, "type": task.type, "status": task.status, "progress": round(task.progress, 4),
        "message": task.message,
        "steps": [{"name": s.name, "status": s.status, "started_at": iso(s.started_at),
                   "completed_at": iso(s.completed_at), "error": s.error} for s in task.steps],
        "result": task.result, "error": task.error, "params": task.params, "created_by": task.created_by,
        "cancel_requested": task.cancel_requested, "created_at": iso(task.created_at),
        "started_at": iso(task.started_at), "estimated_completion": iso(task.estimated_completion),
        "completed_at": iso(task.completed_at),
        "duration_seconds": round(end - task.started_at, 3) if task.started_at is not None else None,
        "links": {"self": f"/api/v1/tasks/{task.id}"},
    }
    if logs:
        view["logs"] = [{"at": iso(line.at), "line": line.line} for line in task.logs]
        view["logs_dropped"] = task.logs_dropped
    return view


class TasksQuery(PageQuery):
    status: TaskStatus | None = None
    type: str | None = Field(None, max_length=100, description="only tasks of this type (cleanup, diagnostics, ...)")


@ROUTES.route("GET", "/api/v1/tasks", summary="Tasks, newest first, with counts by status", scope="read:system",
              query=TasksQuery, tag="tasks")
async def list_tasks(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, TasksQuery)
    offset = int(decode_cursor(q.cursor).get("offset", 0)) if q.cursor else q.offset
    found, total, counts = await svc.tasks.page(q.limit, offset, q.status, q.type)
    return ok({
        "tasks": [task_view(t, logs=False) for t in found],
        "summary": {s: counts.get(s, 0) for s in STATUSES},
        "pagination": pagination(total, q.limit, offset, len(found),
                                 {"offset": offset + len(found)} if offset + len(found) < total else None),
    })


@ROUTES.route("GET", "/api/v1/tasks/{id}", summary="One task: progress, steps, log lines, result",
              scope="read:system", tag="tasks", responses={404: "no such task"})
async def get_task(request: web.Request) -> web.Response:
    svc = services(request)
    task = await svc.tasks.get(request.match_info["id"])
    if task is None:
        raise ApiError(404, f"no task with id {request.match_info['id']!r}")
    return ok(task_view(task))


@ROUTES.route("DELETE", "/api/v1/tasks/{id}",
              summary="Cancel a task (needs the scope that started it); answers the task as it is then",
              scope="read:system", tag="tasks",
              responses={200: "the task, cancelled (or still unwinding, with cancel_requested)",
                         404: "no such task", 409: "the task has already finished"})
async def cancel_task(request: web.Request) -> web.Response:
    svc = services(request)
    task_id = request.match_info["id"]
    key = request["key"]
    task = await svc.tasks.get(task_id)
    if task is None:
        raise ApiError(404, f"no task with id {task_id!r}")
    _authorize_cancel(task, key.id, key.role)
    try:
        task = await svc.tasks.cancel(task_id, actor=key.id)
    except TaskNotFound:
        raise ApiError(404, f"no task with id {task_id!r}") from None
    except TaskFinished as exc:
        raise ApiError(409, f"task {task_id} has already finished ({exc.task.status}); nothing to cancel",
                       {"status": exc.task.status, "completed_at": iso(exc.task.completed_at)}) from None
    return ok(task_view(task))


def _authorize_cancel(task: Task, key_id: str, role: str) -> None:
    """Cancelling undoes what starting did, so it needs what starting needed: the scope the task was
    started with; a task started without one, its creator or an admin."""
    if task.scope is not None:
        if task.scope not in scopes_of(role):
            raise ApiError(403, f"cancelling this {task.type} task needs scope {task.scope}, which role {role}"
                           " does not have", {"required_scope": task.scope, "role": role, "key_id": key_id})
        return
    if task.created_by != key_id and role != "admin":
        raise ApiError(403, f"only the key that started this {task.type} task, or an admin, may cancel it",
                       {"created_by": task.created_by, "role": role, "key_id": key_id})
