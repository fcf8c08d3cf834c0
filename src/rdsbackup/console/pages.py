"""The console's pages and form actions. Every call goes through the service layer with
the signed-in principal, and is allowed only when its key may call the API action of the
same name: the console has no permission model of its own."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from rdsbackup.api.actions import Services
from rdsbackup.api.errors import ApiError, ErrorCode, from_domain
from rdsbackup.api.params import MAX_ID, parse_id
from rdsbackup.console import session
from rdsbackup.console.chart import chart
from rdsbackup.console.summary import DAYS, eta, instance_row
from rdsbackup.service.auth import KeyStore, Principal
from rdsbackup.service.backups import BackupFilter, CreateBackupRequest
from rdsbackup.service.errors import ServiceError
from rdsbackup.service.instances import InstanceFilter
from rdsbackup.service.policies import METHODS as POLICY_METHODS
from rdsbackup.service.policies import PolicyChanges, PolicyMode
from rdsbackup.service.restores import CloneRequest, RestoreService
from rdsbackup.service.views import BackupView
from rdsbackup.states import JOB_UNFINISHED
from rdsbackup.timeutil import utcnow

log = logging.getLogger(__name__)

PREFIX = "/console"
MAX_FORM = 64 * 1024
WATCHED = 10
"""Jobs a session started stay on its instance page (also once finished): the last 10."""
BACKUP_METHODS = ("Physical", "Logical", "Snapshot")
BACKUP_TYPES = ("Auto", "FullBackup", "IncrementalBackup")
SETS_SHOWN = 100
FRAGMENTS = ("live.html", "sets.html")


class Refused(Exception):
    """Shown as an error page with the API's code, message and HTTP status."""

    def __init__(self, error: ApiError) -> None:
        self.error = error


@dataclass
class Console:
    services: Services
    keys: KeyStore
    templates: Jinja2Templates

    # -- helpers ----------------------------------------------------------------------

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("who", session.principal(request, self.keys))
        context["csrf"] = session.csrf_token(request)
        if name not in FRAGMENTS:
            context["flash"] = request.session.pop("flash", None)
        response = self.templates.TemplateResponse(request, name, context, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        return response

    def refused(self, request: Request, error: ApiError) -> Response:
        status = page_status(error)
        return self.page(request, "error.html", status, error=error, http_status=status)

    def who(self, request: Request, action: str) -> Principal:
        principal = session.principal(request, self.keys)
        if principal is None:
            raise _SignIn()
        if not principal.may_call(action):
            raise Refused(ApiError(ErrorCode.ForbiddenRAM))
        return principal

    async def guarded(self, request: Request, run: Callable[[], Response]) -> Response:
        try:
            return await run_in_threadpool(run)
        except _SignIn:
            return RedirectResponse(f"{PREFIX}/login", 303)
        except Refused as e:
            return self.refused(request, e.error)
        except ServiceError as e:
            return self.refused(request, from_domain(e))
        except Exception:
            log.exception("console request %s failed", request.url.path)
            return self.refused(request, ApiError(ErrorCode.InternalError))

    async def form(self, request: Request) -> dict[str, list[str]]:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise Refused(ApiError(ErrorCode.InvalidParameter, "The form is too large."))
        fields: dict[str, list[str]] = {}
        for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            fields.setdefault(name, []).append(value)
        return fields

    async def posted(
        self, request: Request, run: Callable[[Principal, dict[str, str], list[str]], str]
    ) -> Response:
        """A form action: CSRF checked first; ``run`` returns the page to go to (its
        message in the flash); a refusal the service gives is flashed on the instance
        page, except a 404, which is the answer itself."""
        try:
            fields = await self.form(request)
        except Refused as e:
            return self.refused(request, e.error)
        if not session.csrf_ok(request, _one(fields, session.CSRF_FIELD)):
            error = ApiError(ErrorCode.InvalidParameter, "The form is stale; reload the page.")
            return self.page(request, "error.html", 403, error=error)
        one = {k: v[-1] for k, v in fields.items()}
        days = fields.get("period", [])

        def act() -> Response:
            try:
                to = run(self.who(request, _ACTION[request.url.path.rsplit("/", 1)[1]]), one, days)
            except ServiceError as e:
                error = from_domain(e)
                if page_status(error) == 404:
                    raise
                request.session["flash"] = {"error": True, "text": f"{error.code}: {error.message}"}
                to = _instance_path(request)
            except Refused as e:
                if page_status(e.error) in (403, 404):
                    raise
                request.session["flash"] = {"error": True, "text": e.error.message}
                to = _instance_path(request)
            return RedirectResponse(to, 303)

        return await self.guarded(request, act)

    # -- sign-in ----------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self.page(request, "login.html", who=None)
        fields = await self.form(request)
        if not session.csrf_ok(request, _one(fields, session.CSRF_FIELD)):
            return self.page(
                request, "login.html", 403, who=None, problem="The form is stale; try again."
            )
        key_id, secret = _one(fields, "access_key_id") or "", _one(fields, "secret") or ""
        who = await run_in_threadpool(session.sign_in, request, self.keys, key_id, secret)
        if who is None:
            return self.page(
                request,
                "login.html",
                401,
                who=None,
                problem="The AccessKeyId or AccessKeySecret is wrong, or the key is disabled.",
                key_id=key_id,
            )
        return RedirectResponse(f"{PREFIX}/instances", 303)

    async def logout(self, request: Request) -> Response:
        fields = await self.form(request)
        if not session.csrf_ok(request, _one(fields, session.CSRF_FIELD)):
            error = ApiError(ErrorCode.InvalidParameter, "The form is stale; reload the page.")
            return self.page(request, "error.html", 403, error=error)
        session.sign_out(request)
        return RedirectResponse(f"{PREFIX}/login", 303)

    # -- pages ------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/instances", 303)

    async def instances(self, request: Request) -> Response:
        def run() -> Response:
            who = self.who(request, "DescribeDBInstances")
            now = utcnow()
            rows = []
            for instance in self.services.instances.find(who, InstanceFilter(), 1, 100).items:
                policy = (
                    self.services.policies.describe(who, instance.id)
                    if self.services.policies
                    else None
                )
                rows.append(
                    instance_row(instance, policy, self._last_success(who, instance.id), now)
                )
            return self.page(request, "instances.html", who=who, rows=rows, now=now)

        return await self.guarded(request, run)

    async def instance(self, request: Request) -> Response:
        def run() -> Response:
            who = self.who(request, "DescribeBackups")
            instance_id = request.path_params["instance_id"]
            instance = self.services.instances.get(who, instance_id)
            sets = self._sets(who, instance_id)
            policy = (
                self.services.policies.describe(who, instance_id)
                if self.services.policies
                else None
            )
            now = utcnow()
            return self.page(
                request,
                "instance.html",
                who=who,
                instance=instance,
                row=instance_row(instance, policy, _last(sets), now),
                policy=policy,
                days=DAYS,
                policy_methods=POLICY_METHODS,
                methods=BACKUP_METHODS,
                types=BACKUP_TYPES,
                chart=chart([b for b in sets if b.status == "Success"]),
                **self._live(request, who, instance_id, sets),
                **self._set_tables(sets),
            )

        return await self.guarded(request, run)

    async def live(self, request: Request) -> Response:
        """The jobs and tasks fragment the page polls."""

        def run() -> Response:
            who = self.who(request, "DescribeBackupTasks")
            context = self._live(request, who, request.path_params["instance_id"])
            return self.page(request, "live.html", who=who, **context)

        return await self.guarded(request, run)

    async def sets(self, request: Request) -> Response:
        """The sets fragment, fetched again when a job ends."""

        def run() -> Response:
            who = self.who(request, "DescribeBackups")
            instance = self.services.instances.get(who, request.path_params["instance_id"])
            tables = self._set_tables(self._sets(who, instance.id))
            return self.page(request, "sets.html", who=who, instance=instance, **tables)

        return await self.guarded(request, run)

    # -- actions ----------------------------------------------------------------------

    async def create_backup(self, request: Request) -> Response:
        def run(who: Principal, form: dict[str, str], _: list[str]) -> str:
            instance_id = request.path_params["instance_id"]
            job_id = self.services.backups.create_backup(
                who,
                CreateBackupRequest(
                    instance_id=instance_id,
                    method=_choice(form, "method", BACKUP_METHODS),
                    backup_type=_choice(form, "type", BACKUP_TYPES),
                ),
            )
            watched = [j for j in request.session.get("watch", []) if isinstance(j, int)]
            request.session["watch"] = [*watched, job_id][-WATCHED:]
            request.session["flash"] = {"error": False, "text": f"Backup job {job_id} started."}
            return _instance_path(request)

        return await self.posted(request, run)

    async def backup_action(self, request: Request) -> Response:
        def run(who: Principal, form: dict[str, str], _: list[str]) -> str:
            instance_id = request.path_params["instance_id"]
            backup = self._set(who, instance_id, request.path_params["backup_id"])
            verb = request.url.path.rsplit("/", 1)[1]
            flash = ""
            if verb == "download":
                links = self.services.links
                if links is None or links.for_set(backup) is None:
                    raise Refused(ApiError(ErrorCode.InvalidParameter, "This set has no download."))
                return links.path(links.target(backup.id, backup.checksum))
            if verb == "delete":
                self.services.backups.delete_backups(who, instance_id, [backup.id])
                flash = f"Backup set {backup.id} deleted."
            elif verb == "verify":
                task = _restores(self.services).verify(who, instance_id, backup.id)
                flash = f"Verify task {task} started for backup set {backup.id}."
            elif verb == "clone":
                new_id = _restores(self.services).clone(
                    who, CloneRequest(instance_id, backup.id, None, "Postpaid")
                )
                flash = f"Clone {new_id} is being created from backup set {backup.id}."
            elif verb == "restore-database":
                name = (form.get("database") or "").strip()
                if not name:
                    raise Refused(ApiError(ErrorCode.InvalidParameter, "Name a database."))
                task = _restores(self.services).restore_database(
                    who,
                    instance_id,
                    backup.id,
                    name,
                    None,
                    (form.get("new_name") or "").strip() or None,
                )
                flash = f"Restore task {task} started: {name} from backup set {backup.id}."
            request.session["flash"] = {"error": False, "text": flash}
            return _instance_path(request)

        return await self.posted(request, run)

    async def modify_policy(self, request: Request) -> Response:
        def run(who: Principal, form: dict[str, str], days: list[str]) -> str:
            if self.services.policies is None:
                raise Refused(ApiError(ErrorCode.InvalidParameter, "Policies are not served."))
            retention = form.get("retention", "")
            if not retention.isdigit():
                raise Refused(
                    ApiError(ErrorCode.InvalidParameter, "Retention: a number of days (7-730).")
                )
            self.services.policies.modify(
                who,
                request.path_params["instance_id"],
                PolicyChanges(
                    mode=PolicyMode.DATA,
                    preferred_backup_time=form.get("window", ""),
                    preferred_backup_period=",".join(d for d in DAYS if d in days),
                    backup_retention_period=int(retention),
                    backup_method=_choice(form, "method", POLICY_METHODS),
                ),
            )
            request.session["flash"] = {"error": False, "text": "Backup policy saved."}
            return _instance_path(request)

        return await self.posted(request, run)

    # -- reads ------------------------------------------------------------------------

    def _sets(self, who: Principal, instance_id: str) -> list[BackupView]:
        return self.services.backups.describe_backups(
            who, instance_id, BackupFilter(), 1, SETS_SHOWN
        ).items

    def _set(self, who: Principal, instance_id: str, raw_id: str) -> BackupView:
        backup_id = parse_id(raw_id)
        found = (
            self.services.backups.describe_backups(
                who, instance_id, BackupFilter(backup_id=backup_id), 1, 1
            ).items
            if backup_id is not None and backup_id <= MAX_ID
            else []
        )
        if not found:
            raise Refused(ApiError(ErrorCode.InvalidBackupSetIDNotFound))
        return found[0]

    def _last_success(self, who: Principal, instance_id: str) -> BackupView | None:
        page = self.services.backups.describe_backups(
            who, instance_id, BackupFilter(status="Success"), 1, 1
        )
        return _last(page.items)

    def _live(
        self,
        request: Request,
        who: Principal,
        instance_id: str,
        sets: list[BackupView] | None = None,
    ) -> dict[str, Any]:
        """``sets``: the ones the page shows (its mark must be theirs, not a later read's)."""
        jobs = {j.id: j for j in self.services.backups.describe_jobs(who, instance_id)}
        for job_id in request.session.get("watch", []):
            if isinstance(job_id, int) and job_id not in jobs:
                for j in self.services.backups.describe_jobs(who, instance_id, job_id=job_id):
                    jobs[j.id] = j
        now = utcnow()
        ordered = sorted(jobs.values(), key=lambda j: j.id, reverse=True)
        tasks = (
            self.services.restores.tasks(who, instance_id, None) if self.services.restores else []
        )
        active = sum(j.status in JOB_UNFINISHED for j in ordered)
        active += sum(t.status not in ("Finished", "Failed") for t in tasks)
        return {
            "instance_id": instance_id,
            "sets_mark": sets_mark(self._sets(who, instance_id) if sets is None else sets),
            "jobs": [(j, eta(j, now)) for j in ordered],
            "tasks": sorted(tasks, key=lambda t: t.id, reverse=True)[:20],
            "active": active,
        }

    def _set_tables(self, sets: list[BackupView]) -> dict[str, Any]:
        return {
            "sets": [b for b in sets if b.status == "Success"],
            "failed": [b for b in sets if b.status != "Success"],
        }


class _SignIn(Exception):
    pass


_ACTION = {
    "backup": "CreateBackup",
    "download": "DescribeBackups",
    "delete": "DeleteBackup",
    "verify": "VerifyBackup",
    "clone": "CloneDBInstance",
    "restore-database": "RestoreDatabase",
    "policy": "ModifyBackupPolicy",
}


def sets_mark(sets: list[BackupView]) -> str:
    """Changes whenever the sets table would: the page fetches the table again then."""
    state = ";".join(f"{b.id}:{b.status}:{b.verify_status}:{b.size}" for b in sets)
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def page_status(error: ApiError) -> int:
    """The API answers an unknown (or another account's) instance or set with 400, as
    RDS does; a page that is not there is a 404 to a browser."""
    return 404 if error.code.endswith(".NotFound") else error.status


def _restores(services: Services) -> RestoreService:
    if services.restores is None:
        raise Refused(ApiError(ErrorCode.InvalidParameter, "Restores are not served."))
    return services.restores


def _last(sets: list[BackupView]) -> BackupView | None:
    done = [b for b in sets if b.status == "Success"]
    return max(done, key=lambda b: b.end_time) if done else None


def _one(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[-1] if values else None


def _choice(form: dict[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = form.get(name, "")
    if value not in allowed:
        raise Refused(ApiError(ErrorCode.InvalidParameter, f"{name}: one of {', '.join(allowed)}."))
    return value


def _instance_path(request: Request) -> str:
    return f"{PREFIX}/instances/{quote(request.path_params['instance_id'])}"
