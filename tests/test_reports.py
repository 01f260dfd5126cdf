"""PDF reports from polled hosts' rows: read back, rendered to images, delivered once per
period. The hosts are built by ``tests.factories``; only the two-worker test needs real
parts (Redis, PostgreSQL, Celery workers)."""

from __future__ import annotations

import io
import re
import subprocess
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from pypdf import PdfReader
from weasyprint import HTML

from posture.models import DockerHost, EventKind, Finding, FindingEvent, Frequency, Report, ReportSchedule, ReportStatus
from posture.reports import context, forked
from posture.reports import pdf as pdf_module
from posture.reports.generate import generate
from posture.reports.pdf import StaticOnlyFetcher, render_pdf, static_roots
from posture.tasks import dispatch_reports

from . import factories
from .builders import container, port, snapshot
from .processes import celery_processes
from .waiting import wait_for


def pdf_text(data: bytes) -> str:
    """The PDF's text with white space folded: table cells wrap lines anywhere."""
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).split())


@pytest.fixture
def two_polled_hosts(db, analyst):
    db_host = snapshot([container("pg", ports=[port(5432, 16032)], labels={"note": "<b>not bold</b>"}), container("edge", network_mode="host")])
    one = factories.polled("prod-db-1", db_host, labels={"env": "prod"})
    two = factories.polled("stage-cache-1", snapshot([container("cache", ports=[port(6379, 16079)])]), labels={"env": "stage"})
    accepted = Finding.objects.get(host=two, rule_id="port-sensitive-service-exposed")
    accepted.accept(by=analyst, until=timezone.now() + timedelta(days=10), justification="Stage cache behind the VPN, ticket SEC-9")
    return one, two


@pytest.mark.django_db
def test_a_report_carries_hosts_findings_remediation_and_accepted_risks(two_polled_hosts, tmp_path):
    out = tmp_path / "weekly.pdf"
    call_command("report", "generate", "--out", str(out), stdout=io.StringIO())
    reader = PdfReader(out)
    text = pdf_text(out.read_bytes())
    for expected in (
        "Executive summary",
        "What changed",
        "Host prod-db-1",
        "Host stage-cache-1",
        "Database, cache, broker or admin port published on every interface",
        "-p 127.0.0.1:16032:5432",  # the concrete docker run form
        '"127.0.0.1:16032:5432"',  # and the compose form
        "replace --network host with --network <app-net>",
        "Accepted risks",
        "Stage cache behind the VPN, ticket SEC-9",
        # Exceptions with their owners, expiries and coverage.
        "Findings an exception covers count as accepted",
        f"{(timezone.now() + timedelta(days=10)):%d %b %Y} 1 on 1 host",
        "Appendix: rules",
        f"Page 2 of {len(reader.pages)}",
    ):
        assert expected in text, expected
    assert "arthur-analyst" in text.replace("- ", "-")  # the owner, in a narrow cell that wraps
    # Pages render to images (what a reader sees), one per page.
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(out), str(tmp_path / "page")], check=True)
    assert len(list(tmp_path.glob("page-*.png"))) == len(reader.pages)


@pytest.mark.django_db
def test_a_report_scoped_by_label_leaves_other_hosts_out(two_polled_hosts, tmp_path):
    out = tmp_path / "prod.pdf"
    call_command("report", "generate", "--label", "env=prod", "--out", str(out), stdout=io.StringIO())
    text = pdf_text(out.read_bytes())
    assert "Host prod-db-1" in text and "stage-cache-1" not in text


@pytest.mark.django_db
def test_report_context_queries_do_not_grow_with_hosts(django_assert_max_num_queries):
    factories.polled_hosts(f"h{i}" for i in range(3))
    end = timezone.now()
    with django_assert_max_num_queries(12) as few:
        context.build(labels={}, start=end - timedelta(days=7), end=end, title="t")
    factories.polled_hosts(f"h{i}" for i in range(3, 9))
    with django_assert_max_num_queries(len(few.captured_queries)):
        context.build(labels={}, start=end - timedelta(days=7), end=end, title="t")


@pytest.mark.django_db
def test_engine_values_stay_text_in_the_pdf(db):
    host = factories.polled("h", snapshot())
    Finding.objects.create(
        host=host, fingerprint="x", rule_id="privileged", severity="critical", subject_type="container", subject_key="evil", subject_name="<img src='file:///etc/passwd'>", title="Container runs privileged",
        remediation="<script>alert(1)</script>", first_seen=timezone.now(), last_seen=timezone.now(),
    )  # fmt: skip
    end = timezone.now()
    text = pdf_text(render_pdf(context.build(labels={}, start=end - timedelta(days=1), end=end, title="t")).data)
    assert "<img src='file:///etc/passwd'>" in text and "<script>alert(1)</script>" in text


def test_the_renderer_reads_only_static_files(tmp_path):
    fetcher = StaticOnlyFetcher(static_roots())
    assert b"@page" in fetcher.fetch(f"file://{static_roots()[0]}/posture/report.css").read()
    for url in (
        "http://127.0.0.1:1/x.css",
        "https://example.invalid/a.png",
        "file:///etc/passwd",
        f"file://{static_roots()[0]}/../manage.py",
        "data:text/plain,hi",
        "ftp://x/y",
    ):
        with pytest.raises(ValueError, match="refused|disallowed"):
            fetcher.fetch(url)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    html = f'<link rel="stylesheet" href="http://127.0.0.1:1/evil.css"><object data="file://{secret}"></object><img src="file://{secret}"><p>body</p>'
    pdf = HTML(string=html, url_fetcher=fetcher).write_pdf()
    assert "TOP-SECRET-VALUE" not in pdf_text(pdf)


@pytest.mark.parametrize(
    ("frequency", "now", "expected"),
    [
        (Frequency.DAILY, datetime(2026, 11, 28, 5, 0, tzinfo=UTC), datetime(2026, 11, 28, 6, 0, tzinfo=UTC)),
        (Frequency.DAILY, datetime(2026, 11, 28, 6, 0, tzinfo=UTC), datetime(2026, 11, 29, 6, 0, tzinfo=UTC)),
        (Frequency.WEEKLY, datetime(2026, 11, 28, 7, 0, tzinfo=UTC), datetime(2026, 11, 30, 6, 0, tzinfo=UTC)),  # next Monday
        (Frequency.MONTHLY, datetime(2026, 12, 15, 7, 0, tzinfo=UTC), datetime(2027, 1, 1, 6, 0, tzinfo=UTC)),
    ],
)
def test_schedules_know_their_next_run(frequency, now, expected):
    schedule = ReportSchedule(name="s", frequency=frequency, weekday=0, day_of_month=1, at=time(6, 0))
    assert schedule.run_after(now) == expected
    start, end = schedule.period_before(expected)
    assert end == expected and start < end


@pytest.mark.django_db
def test_a_due_schedule_makes_one_report_and_mails_it(two_polled_hosts):
    schedule = ReportSchedule.objects.create(name="weekly", frequency=Frequency.WEEKLY, recipients="sec@example.test, ciso@example.test")
    ReportSchedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now() - timedelta(minutes=1))
    schedule.refresh_from_db()
    now = timezone.now()
    report = schedule.claim_due(now)
    assert report is not None and schedule.claim_due(now) is None  # a second dispatcher gets nothing
    generate(report, token="task-1")
    report.refresh_from_db()
    assert report.status == ReportStatus.READY and report.pages > 3 and report.size > 10_000 and report.hosts == 2
    (message,) = mail.outbox
    assert message.to == ["sec@example.test", "ciso@example.test"]
    assert message.attachments[0][0] == report.filename and message.attachments[0][1][:4] == b"%PDF"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_schedule_fires_once_per_period_under_two_workers(redis_url, tmp_path):
    mail = {"EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend", "EMAIL_FILE_PATH": str(tmp_path / "mail")}
    with celery_processes(redis_url, tmp_path, POSTURE_REPORTS_DIR=str(tmp_path / "reports"), **mail) as procs:
        factories.polled("h")
        schedule = ReportSchedule.objects.create(name="daily", frequency=Frequency.DAILY, recipients="sec@example.test")
        ReportSchedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now() - timedelta(seconds=5))
        procs.start_worker("w1")
        procs.start_worker("w2")
        for _ in range(8):
            dispatch_reports.delay()
        # emailed_to is saved after the mail is written: waiting on READY alone raced the mail file
        # being written (the file exists, still empty, between open and write).
        mailed = Report.objects.filter(status=ReportStatus.READY).exclude(emailed_to=[])
        wait_for(mailed.exists, timeout=90, what="the scheduled report, mailed")
        for _ in range(4):
            dispatch_reports.delay()
        wait_for(lambda: "dispatch_reports" in procs.log("w1") + procs.log("w2"), timeout=10)
    assert Report.objects.count() == 1
    mails = list(Path(tmp_path / "mail").glob("*.log"))
    assert len(mails) == 1 and "application/pdf" in mails[0].read_text()


def _finding(host: DockerHost, n: int, severity: str, **fields: object) -> Finding:
    now = timezone.now()
    return Finding.objects.create(
        host=host, fingerprint=f"r|container|c{n}|", rule_id="privileged", severity=severity, subject_type="container", subject_key=f"c{n}",
        subject_name=f"c{n}", title="t", first_seen=now, last_seen=now, **fields,
    )  # fmt: skip


@pytest.mark.django_db
def test_the_change_list_keeps_the_worst_changes_when_it_is_cut(monkeypatch):
    host = DockerHost.objects.create(name="h", url="unix:///nowhere.sock")
    now = timezone.now()
    # Alphabetically medium < low < info < high < critical: ordering by the text cut the critical ones first.
    for n, severity in enumerate(["medium", "low", "info", "critical", "high", "medium"]):
        FindingEvent.objects.create(finding=_finding(host, n, severity), at=now, kind=EventKind.OPENED)
    monkeypatch.setattr(context, "MAX_CHANGES_LISTED", 2)
    ctx = context.build(labels={}, start=now - timedelta(hours=1), end=now + timedelta(hours=1), title="t")
    assert [e.finding.severity for e in ctx["changes"]] == ["critical", "high"] and ctx["changes_truncated"]


@pytest.mark.django_db
def test_a_report_is_rendered_by_one_task_at_a_time():
    report = Report.objects.create(title="r", period_start=timezone.now() - timedelta(days=1), period_end=timezone.now())
    assert report.claim("task-a")
    assert not report.claim("task-b")  # a second task while the first renders
    assert report.claim("task-a")  # the same task, re-delivered after its worker died
    assert report.claim("task-c", now=timezone.now() + timedelta(hours=1))  # a lease that ran out


@pytest.mark.django_db
def test_report_queries_do_not_grow_with_accepted_risks(django_assert_max_num_queries, analyst, viewer):
    host = DockerHost.objects.create(name="h", url="unix:///nowhere.sock")
    until = timezone.now() + timedelta(days=3)
    end = timezone.now() + timedelta(minutes=1)

    def render() -> None:
        render_pdf(context.build(labels={}, start=end - timedelta(days=7), end=end, title="t"))

    _finding(host, 0, "high").accept(by=analyst, until=until, justification="Reviewed: internal only")
    with django_assert_max_num_queries(20) as few:
        render()
    for n, who in enumerate([viewer, analyst, viewer, analyst], start=1):
        _finding(host, n, "critical").accept(by=who, until=until, justification="Reviewed: internal only")
    with django_assert_max_num_queries(len(few.captured_queries)):
        render()


@pytest.mark.django_db
def test_a_report_rendered_in_parts_numbers_its_pages_and_contents_as_one(monkeypatch):
    monkeypatch.setattr(pdf_module, "HOSTS_PER_PART", 1)  # a part per host, side by side
    factories.polled_hosts(["alpha", "bravo", "charlie"])
    end = timezone.now()
    rendered = render_pdf(context.build(labels={}, start=end - timedelta(days=1), end=end, title="t"))
    reader = PdfReader(io.BytesIO(rendered.data))
    pages = [" ".join(page.extract_text().split()) for page in reader.pages]
    assert rendered.pages == len(pages)
    assert "Page" not in pages[0]  # the cover has no footer
    assert all(page.endswith(f"Posture Page {n} of {len(pages)}") for n, page in enumerate(pages[1:], start=2))
    contents = reader.pages[1].extract_text(extraction_mode="layout")  # each entry's page number on its line
    for name in ("alpha", "bravo", "charlie"):
        listed = int(re.search(rf"Host {name} +(\d+)", contents).group(1))
        assert pages[listed - 1].startswith(f"Host {name}"), name
    # The contents' links land on those pages.
    targets = {str(a.get_object()["/Dest"]) for a in reader.pages[1]["/Annots"]}
    assert {"summary", "changes", "accepted", "appendix"} < targets
    for dest, where in reader.named_destinations.items():
        if dest.startswith("host-"):
            name = DockerHost.objects.get(pk=int(dest.removeprefix("host-"))).name
            assert pages[reader.get_destination_page_number(where)].startswith(f"Host {name}")


def test_a_part_that_fails_fails_the_report_with_its_error():
    def broken() -> None:
        raise ValueError("layout exploded")

    with pytest.raises(forked.ChildFailed, match="layout exploded"):
        forked.run([lambda: 1, broken, lambda: 3], workers=2)
    assert forked.run([lambda: 1, lambda: "two"], workers=1) == [1, "two"]
