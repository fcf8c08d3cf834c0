"""The console in a real headless Chromium (Debian's, driven by Playwright) against the
served memory service: sign in, back up with live progress, download, delete; another
account sees nothing; CSRF, bad credentials, no secret on any page.

With ``RDSBACKUP_CONSOLE_SHOTS=<dir>`` the pages are also saved as screenshots there
(scripts/console-screenshots.sh writes docs/console/*.png so)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from rdsbackup.engines.memory import MemoryServer
from rdsbackup.service.auth import Principal
from rdsbackup.service.backups import BackupFilter
from rdsbackup.service.policies import PolicyService, PolicyView
from rdsbackup.service.views import BackupView
from rdsbackup.testing import register
from tests.fixtures.memory import MemoryRds
from tests.fixtures.service import Key

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} missing (scripts/install-deps.sh installs it)", allow_module_level=True
    )

SHOTS = os.environ.get("RDSBACKUP_CONSOLE_SHOTS")
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def base(rds: MemoryRds) -> str:
    return f"http://{rds.endpoint}/console"


def principal(rds: MemoryRds, key: Key) -> Principal:
    record = rds.memory.service.core.keys.lookup(key.access_key_id)
    assert record is not None
    return record.principal


def sets(rds: MemoryRds, key: Key, instance_id: str) -> list[BackupView]:
    who = principal(rds, key)
    return rds.memory.service.backups.describe_backups(
        who, instance_id, BackupFilter(), 1, 100
    ).items


def sign_in(page: Page, rds: MemoryRds, key: Key) -> None:
    page.goto(base(rds) + "/login")
    page.fill("input[name=access_key_id]", key.access_key_id)
    page.fill("input[name=secret]", key.secret)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/instances$"))


def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def no_secret(page: Page, rds: MemoryRds) -> None:
    html = page.content()
    assert rds.key.secret not in html
    assert rds.server.password not in html


def test_sign_in_back_up_live_download_delete(
    browser: Browser, memory_rds: MemoryRds, tmp_path: Path
) -> None:
    rds = memory_rds
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)

    # Bad credentials: refused, no session.
    page.goto(base(rds))  # /console: the instances, that is the sign-in first
    assert page.url.endswith("/console/login")
    page.fill("input[name=access_key_id]", rds.key.access_key_id)
    page.fill("input[name=secret]", rds.key.secret + "x")
    with page.expect_response(lambda r: r.url.endswith("/console/login")) as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 401
    assert "wrong" in page.inner_text("[role=alert]")
    page.goto(base(rds) + "/instances")
    assert page.url.endswith("/console/login")

    sign_in(page, rds, rds.key)
    cookie = next(c for c in context.cookies() if c["name"] == "rdsbackup_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    row = page.locator(f"tr[data-instance='{rds.instance_id}']")
    assert "not protected" in row.inner_text()
    assert "MariaDB" in row.inner_text()
    no_secret(page, rds)

    # A backup held half way: the page shows it running, then Finished, without a reload.
    gate = rds.server.block_next_backup()
    page.click(f"a[href$='/instances/{rds.instance_id}']")
    page.evaluate("window.notReloaded = true")
    page.select_option("#backup-form select[name=type]", "FullBackup")
    page.click("#backup-form button[type=submit]")
    assert "started" in page.inner_text(".flash.ok")
    page.evaluate("window.notReloaded = true")
    assert gate.wait_reached()
    try:
        running = page.locator("tr[data-job][data-status=Uploading]", has_text="50%")
        running.wait_for()  # held half way, as the page shows without a reload
        assert "6.2 KiB of 12.4 KiB" in running.inner_text()
        shot(page, "instance-running-job")
    finally:
        gate.release()
    page.locator("tr[data-job][data-status=Finished]").wait_for()
    page.locator("#sets tr[data-set]").wait_for()  # the sets table was fetched again
    assert page.evaluate("window.notReloaded") is True
    [backup] = sets(rds, rds.key, rds.instance_id)
    set_row = page.locator(f"#sets tr[data-set='{backup.id}']")
    assert "Physical / FullBackup" in set_row.inner_text()
    no_secret(page, rds)

    # Download: the signed link answers with the set's tar; its manifest is the checksum.
    with page.expect_download() as download:
        set_row.locator("button[value=download]").click()
    data = Path(download.value.path()).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        first = tar.next()
        assert first is not None and first.name == "manifest.json"
        manifest = tar.extractfile(first)
        assert manifest is not None
        assert hashlib.sha256(manifest.read()).hexdigest() == backup.checksum

    # Verify starts a task the live part follows to its end (the memory engine has no
    # server to restore into, so it fails, with its reason on the page).
    set_row.locator("button[value=verify]").click()
    assert f"for backup set {backup.id}" in page.inner_text(".flash.ok")
    task = page.locator("#tasks tr[data-task]", has_text="verify")
    page.locator(
        "#tasks tr[data-task] .status.Failed, #tasks tr[data-task] .status.Finished"
    ).wait_for()
    assert "no database admin" in task.inner_text() or "Finished" in task.inner_text()

    # The policy form saves through ModifyBackupPolicy.
    page.goto(base(rds) + f"/instances/{rds.instance_id}")
    page.fill("#policy-form input[name=retention]", "14")
    page.check("#policy-form input[value=Monday]")
    page.click("#policy-form button[type=submit]")
    assert "saved" in page.inner_text(".flash.ok")
    policy = _policy(rds)
    assert policy.backup_retention_period == 14 and "Monday" in policy.preferred_backup_period
    page.eval_on_selector(
        "#policy-form", "form => { form.noValidate = true; }"
    )  # past the browser's min=7
    page.fill("#policy-form input[name=retention]", "3")
    page.click("#policy-form button[type=submit]")
    assert "InvalidBackupRetentionPeriod.Malformed" in page.inner_text(".flash.error")
    assert _policy(rds).backup_retention_period == 14
    page.locator("#policy-form").screenshot(path=str(Path(SHOTS or tmp_path) / "policy-form.png"))

    # A failed backup shows its reason.
    rds.server.fail_next_backup("lost connection to server during dump")
    page.click("#backup-form button[type=submit]")
    page.locator("#failed td.reason").wait_for()
    assert "lost connection" in page.inner_text("#failed")

    # An incremental on the full: its chain is shown, and the full cannot go first.
    page.select_option("#backup-form select[name=type]", "IncrementalBackup")
    page.click("#backup-form button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#sets tr[data-set]').length === 2")
    incremental = max(b.id for b in sets(rds, rds.key, rds.instance_id) if b.status == "Success")
    inc_row = page.locator(f"#sets tr[data-set='{incremental}']")
    assert (
        "IncrementalBackup" in inc_row.inner_text() and f"on #{backup.id}" in inc_row.inner_text()
    )
    page.reload()  # the chart is drawn with the page
    assert page.locator("#chart rect.bar").count() == 2
    shot(page, "backup-sets-and-chart")
    page.goto(base(rds) + "/instances")
    assert "protected" in page.inner_text(f"tr[data-instance='{rds.instance_id}'] .protection")
    assert "not protected" not in page.inner_text(f"tr[data-instance='{rds.instance_id}']")
    shot(page, "instances")
    page.goto(base(rds) + f"/instances/{rds.instance_id}")

    # Delete (after the browser's confirm): refused while the incremental depends on the
    # full; then both go, from the page and from the service.
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(f"#sets tr[data-set='{backup.id}'] button.danger").click()
    assert "depend on this set" in page.inner_text(".flash.error")
    for doomed in (incremental, backup.id):
        page.locator(f"#sets tr[data-set='{doomed}'] button.danger").click()
        assert f"Backup set {doomed} deleted." in page.inner_text(".flash.ok")
        assert page.locator(f"#sets tr[data-set='{doomed}']").count() == 0
    assert [b.id for b in sets(rds, rds.key, rds.instance_id) if b.status == "Success"] == []

    page.goto(base(rds) + "/instances")
    no_secret(page, rds)
    page.click("header button[type=submit]")  # sign out
    page.wait_for_url(re.compile(r".*/console/login$"))
    page.goto(base(rds) + "/instances")
    assert page.url.endswith("/console/login")
    context.close()


def test_another_account_sees_nothing_of_the_first(browser: Browser, memory_rds: MemoryRds) -> None:
    rds = memory_rds
    core = rds.memory.service.core
    access = rds.memory.engine.serve(MemoryServer())
    hostile = "<script>window.injected = true</script><b>shop</b>"
    other_id = register(
        core.inventory, core.accounts.ensure_account("acct2"), access, description=hostile
    )
    other = Key(*core.accounts.create_key("acct2"))
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    sign_in(page, rds, other)
    html = page.content()
    assert other_id in html and rds.instance_id not in html
    # What a user typed is shown as text, never run or parsed as markup.
    assert hostile in page.inner_text("#instances")
    assert page.evaluate("window.injected") is None and page.locator("#instances b").count() == 0

    first = base(rds) + f"/instances/{rds.instance_id}"
    for url in (first, first + "/live", first + "/sets"):
        answer = page.goto(url)
        assert answer is not None and answer.status == 404, url
        assert "InvalidDBInstanceId.NotFound" in page.content()
        assert rds.instance_id not in page.inner_text("main").replace(url, "")

    # A valid form of acct2 aimed at acct1's instance: 404, and nothing is started.
    page.goto(base(rds) + f"/instances/{other_id}")
    token = page.get_attribute("#backup-form input[name=csrf_token]", "value")
    assert token
    refused = context.request.post(
        first + "/backup",
        form={"csrf_token": token, "method": "Physical", "type": "Auto"},
        max_redirects=0,
    )
    assert refused.status == 404
    who = principal(rds, rds.key)
    assert rds.memory.service.backups.describe_jobs(who, rds.instance_id) == []
    context.close()


def test_forms_without_the_csrf_token_are_refused(browser: Browser, memory_rds: MemoryRds) -> None:
    rds = memory_rds
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, rds, rds.key)
    target = base(rds) + f"/instances/{rds.instance_id}/backup"
    forms: tuple[dict[str, str | float | bool], ...] = (
        {"method": "Physical", "type": "Auto"},
        {"csrf_token": "forged", "method": "Physical", "type": "Auto"},
    )
    for form in forms:
        answer = context.request.post(target, form=form, max_redirects=0)
        assert answer.status == 403
    who = principal(rds, rds.key)
    assert rds.memory.service.backups.describe_jobs(who, rds.instance_id) == []
    # A read-only key sees the pages; its buttons are refused as the API refuses it.
    reader = Key(*rds.memory.service.core.accounts.create_key("acct1", actions="Describe*"))
    readonly = browser.new_context()
    page = readonly.new_page()
    sign_in(page, rds, reader)
    page.goto(base(rds) + f"/instances/{rds.instance_id}")
    with page.expect_response(lambda r: r.url.endswith("/backup")) as blocked:
        page.click("#backup-form button[type=submit]")
    assert blocked.value.status == 403 and "Forbidden.RAM" in page.inner_text("main")
    readonly.close()
    assert rds.memory.service.backups.describe_jobs(who, rds.instance_id) == []

    # Text that is not ASCII is a wrong token or secret like any other, not an error.
    odd = context.request.post(target, form={"csrf_token": "jeton-é"}, max_redirects=0)
    assert odd.status == 403
    fresh = browser.new_context()
    page = fresh.new_page()
    page.goto(base(rds) + "/login")
    page.fill("input[name=access_key_id]", rds.key.access_key_id)
    page.fill("input[name=secret]", "geheim-ä")
    with page.expect_response(lambda r: r.url.endswith("/console/login")) as wrong:
        page.click("button[type=submit]")
    assert wrong.value.status == 401
    fresh.close()

    # Signing in needs the token too (a forged cross-site sign-in is refused).
    fresh = browser.new_context()
    answer = fresh.request.post(
        base(rds) + "/login",
        form={"access_key_id": rds.key.access_key_id, "secret": rds.key.secret},
        max_redirects=0,
    )
    assert answer.status == 403
    fresh.close()
    context.close()


def _policy(rds: MemoryRds) -> PolicyView:
    core = rds.memory.service.core
    return PolicyService(core.catalog, core.instances).describe(
        principal(rds, rds.key), rds.instance_id
    )
