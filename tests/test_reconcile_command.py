"""`manage.py reconcile PAIR [--repair] [--json]`: output, exit status, progress bar."""

import io
import json
from datetime import timedelta
from unittest import mock

import pytest
import time_machine
from django.core.management import ManagementUtility
from django.db import connections
from django.utils import timezone
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from replication.management.commands.reconcile import ProgressBar
from replication.models import ReconcileRun
from replication.reconcile import run as reconcile
from tests.factories import make_pair

SOURCE, BACKUP = "cmd-src", "cmd-bak"
JSON_KEYS = [
    "run",
    "status",
    "source_objects",
    "destination_objects",
    "missing",
    "extra",
    "mismatched",
    "unverified",
    "in_flight",
    "kept",
    "repaired",
    "duration_s",
    "verdict",
    "verdict_text",
]


@pytest.fixture
def site(db, s3):
    with time_machine.travel(timezone.now() - timedelta(hours=1), tick=True):
        for key in ("index.html", "about.html", "logo.png"):
            s3.put_object(Bucket=SOURCE, Key=key, Body=key.encode())
        s3.put_object(Bucket=BACKUP, Key="index.html", Body=b"index.html")
        s3.put_object(Bucket=BACKUP, Key="old.html", Body=b"gone from the source")
    s3.put_object(Bucket=SOURCE, Key="new.html", Body=b"just written")
    return make_pair(name="site", source_bucket=SOURCE, backup_bucket=BACKUP, grace_seconds=300)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def manage(*argv: str) -> int:
    """Run a command as `manage.py` would, returning its exit status."""
    # run_from_argv closes every connection when it ends; the test's transaction must live on.
    with mock.patch.object(connections, "close_all"):
        try:
            ManagementUtility(["manage.py", *argv]).execute()
        except SystemExit as exit_:
            return exit_.code
    return 0


def test_json_prints_exactly_the_contract_fields_and_exits_zero_when_out_of_sync(site, capsys):
    assert manage("reconcile", "site", "--json") == 0

    out = capsys.readouterr().out
    summary = json.loads(out)
    assert list(summary) == JSON_KEYS
    run = ReconcileRun.objects.get()
    assert summary == {
        "run": run.pk,
        "status": "succeeded",
        "source_objects": 4,
        "destination_objects": 2,
        "missing": 2,
        "extra": 1,
        "mismatched": 0,
        "unverified": 0,
        "in_flight": 1,
        "kept": 0,
        "repaired": 0,
        "duration_s": run.duration_s,
        "verdict": "out_of_sync",
        "verdict_text": "out of sync, 2 missing, 1 extra · 1 in flight",
    }
    assert isinstance(summary["duration_s"], float)
    assert out.count("\n") == 1


def test_repair_copies_what_is_missing_and_reports_it(site, capsys):
    assert manage("reconcile", "site", "--repair", "--json") == 0
    repaired = json.loads(capsys.readouterr().out)
    assert repaired["verdict_text"] == (
        "in sync after repair: 2 missing copied; 1 extra kept · 1 in flight"
    )
    assert (repaired["repaired_missing"], repaired["repair_failed"]) == (2, 0)
    assert repaired["extras_deleted"] == 0
    # Both missing objects copied; the extra is allowed (the pair keeps what the source lost).
    assert (repaired["missing"], repaired["repaired"], repaired["verdict"]) == (2, 2, "in_sync")

    assert manage("reconcile", "site", "--json") == 0
    after = json.loads(capsys.readouterr().out)
    assert (after["missing"], after["extra"], after["in_flight"]) == (0, 1, 1)


def test_plain_output_is_a_readable_summary(site, capsys):
    assert manage("reconcile", "site") == 0
    out = capsys.readouterr().out
    run = ReconcileRun.objects.get()
    # The verdict first, then the counts that explain it.
    assert out.startswith(
        f"Run #{run.pk} of site finished: out of sync, 2 missing, 1 extra · 1 in flight\n"
        "  finished in "
    )
    assert "source 4 objects, 40 B; backup 2 objects, 30 B" in out
    assert "in sync 1, missing 2, extra 1, mismatched 0, unverified 0, in flight 1" in out


def test_plain_output_says_how_many_objects_checksums_settled(site, s3, capsys):
    with time_machine.travel(timezone.now() - timedelta(hours=1), tick=True):
        for bucket in (SOURCE, BACKUP):
            s3.put_object(Bucket=bucket, Key="kms.txt", Body=b"k", ChecksumAlgorithm="SHA256")
    # SSE-KMS ETags are not MD5s; moto makes MD5s, so the stored object is given one.
    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(BACKUP, "kms.txt")._etag = "c0ffee" * 5 + "00"

    assert manage("reconcile", "site") == 0
    out = capsys.readouterr().out

    assert "in sync 2, missing 2, extra 1, mismatched 0, unverified 0, in flight 1" in out
    assert "1 of these settled by checksums (the listing could not)" in out


def test_unknown_pair_exits_non_zero_with_one_line(db, capsys):
    assert manage("reconcile", "nope") == 1
    err = capsys.readouterr().err
    assert err == "CommandError: no pair named 'nope' (see manage.py add_pair)\n"


def test_missing_bucket_exits_non_zero_with_one_line_and_saves_the_failed_run(site, s3, capsys):
    for key in ("index.html", "old.html"):
        s3.delete_object(Bucket=BACKUP, Key=key)
    s3.delete_bucket(Bucket=BACKUP)

    assert manage("reconcile", "site", "--json") == 1

    captured = capsys.readouterr()
    run = ReconcileRun.objects.get()
    assert captured.out == ""
    assert captured.err == (
        f"CommandError: Run #{run.pk} of site failed: "
        "backup bucket 'cmd-bak' does not exist (S3: AWS S3 (the default AWS credentials, "
        "default region us-east-1))\n"
    )
    assert "Traceback" not in captured.err
    assert (run.status, run.error) == ("failed", "backup bucket 'cmd-bak' does not exist")


def test_unreachable_endpoint_exits_non_zero_with_one_line(site, settings, monkeypatch, capsys):
    settings.S3_MAX_ATTEMPTS = 1
    settings.S3_CONNECT_TIMEOUT = 1
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")

    assert manage("reconcile", "site") == 1

    captured = capsys.readouterr()
    err = captured.err
    assert captured.out == ""
    assert err.startswith("CommandError: Run #")
    assert "cannot reach the S3 endpoint for source bucket 'cmd-src'" in err
    assert err.count("\n") == 1


def test_a_pair_already_being_reconciled_is_refused(site, capsys):
    active, _ = reconcile.request_run(site)
    assert manage("reconcile", "site") == 1
    assert f"already has reconcile #{active.pk} queued" in capsys.readouterr().err


def test_no_progress_bar_when_piped(site, capsys):
    assert manage("reconcile", "site") == 0
    assert capsys.readouterr().err == ""


def test_progress_bar_draws_on_a_terminal_and_clears_itself():
    terminal, now = Terminal(), [0.0]
    bar = ProgressBar(terminal, expected=1000, clock=lambda: now[0])
    now[0] = 1.5
    bar.advance(250)
    assert terminal.getvalue().startswith("\r[#######-----------------------]  25%  250 objects")
    bar.close()
    assert terminal.getvalue().endswith("\r\033[K")


def test_progress_bar_without_an_estimate_counts_objects():
    terminal, now = Terminal(), [0.0]
    bar = ProgressBar(terminal, expected=0, clock=lambda: now[0])
    now[0] = 2.0
    bar.advance(1234)
    assert "1,234 objects scanned" in terminal.getvalue()


def test_progress_bar_stays_silent_on_a_pipe():
    pipe, now = io.StringIO(), [0.0]
    bar = ProgressBar(pipe, expected=10, clock=lambda: now[0])
    now[0] = 5.0
    bar.advance(5)
    bar.close()
    assert pipe.getvalue() == ""


def test_denied_access_exits_non_zero_with_one_line(site, monkeypatch, capsys):
    from botocore.exceptions import ClientError

    from replication import s3 as s3_clients

    def deny(**_):
        error = {"Error": {"Code": "AccessDenied", "Message": "denied"}}
        error["ResponseMetadata"] = {"HTTPStatusCode": 403, "HTTPHeaders": {}}
        raise ClientError(error, "ListObjectsV2")

    # Both the plain clients and the lean listing clients are refused.
    for factory in ("client", "listing_client"):
        real = getattr(s3_clients, factory)

        def denying(*args, _real=real, **kwargs):
            client = _real(*args, **kwargs)
            client.meta.events.register("before-call.s3.ListObjectsV2", deny)
            return client

        monkeypatch.setattr(s3_clients, factory, denying)

    assert manage("reconcile", "site", "--json") == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("CommandError: Run #")
    assert "access denied to source bucket 'cmd-src'" in captured.err
    assert "Traceback" not in captured.err
