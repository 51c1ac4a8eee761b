import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from replication.models import BucketPair, IngestKey
from tests.factories import make_ingest_key

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


class TestAddPair:
    def test_registers_a_pair_with_prefixes_and_options(self):
        out, _ = run(
            "add_pair",
            "photos",
            "--source",
            "photos-src/raw",
            "--backup",
            "s3://photos-bak/copies/",
            "--grace",
            "60",
            "--reconcile-every",
            "30",
            "--mirror-deletes",
        )
        pair = BucketPair.objects.get(name="photos")
        assert (pair.source_bucket, pair.source_prefix) == ("photos-src", "raw/")
        assert (pair.backup_bucket, pair.backup_prefix) == ("photos-bak", "copies/")
        assert (pair.grace_seconds, pair.reconcile_every_minutes) == (60, 30)
        assert pair.mirror_deletes is True
        assert "Registered pair photos" in out

    def test_running_again_updates_only_what_is_given(self):
        run("add_pair", "photos", "--source", "a-src", "--backup", "a-bak", "--grace", "60")
        out, _ = run(
            "add_pair", "photos", "--source", "a-src", "--backup", "a-bak2", "--no-mirror-deletes"
        )
        pair = BucketPair.objects.get(name="photos")
        assert pair.backup_bucket == "a-bak2"
        assert pair.grace_seconds == 60
        assert BucketPair.objects.count() == 1
        assert "Updated pair photos" in out

    def test_no_schedule_clears_the_interval(self):
        run("add_pair", "p", "--source", "a-src", "--backup", "a-bak", "--reconcile-every", "5")
        run("add_pair", "p", "--source", "a-src", "--backup", "a-bak", "--no-schedule")
        assert BucketPair.objects.get(name="p").reconcile_every_minutes is None

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--source", "same", "--backup", "same"], "must not be the source bucket itself"),
            (["--source", "same/", "--backup", "same/b"], "the backup would copy itself"),
            (["--source", "Bad_Name", "--backup", "ok-bak"], "not a valid S3 bucket name"),
        ],
    )
    def test_bad_pairs_fail_with_the_reason_and_store_nothing(self, args, message):
        with pytest.raises(CommandError, match=message):
            run("add_pair", "broken", *args)
        assert not BucketPair.objects.exists()

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--grace", "soon"], "is not a whole number"),
            (["--grace", "-1"], "must not be negative"),
            (["--reconcile-every", "0"], "must be at least 1"),
        ],
    )
    def test_bad_numbers_are_refused_by_the_parser(self, args, message):
        with pytest.raises(CommandError, match=message):
            run("add_pair", "p", "--source", "a-src", "--backup", "a-bak", *args)
        assert not BucketPair.objects.exists()

    def test_sets_the_freshness_target_and_protection_window_and_records_the_change(self):
        run("add_pair", "p", "--source", "a-src", "--backup", "a-bak")
        out, _ = run(
            "add_pair",
            "p",
            "--source",
            "a-src",
            "--backup",
            "a-bak",
            "--freshness-target",
            "99.5%",
            "--protection-window-days",
            "35",
        )
        pair = BucketPair.objects.get(name="p")
        assert (pair.freshness_target, pair.protection_window_days) == (Decimal("99.5"), 35)
        assert "99.5% of copies within 900 s, protection window 35 d" in out
        change = pair.objective_changes.get()
        assert (change.target_before, change.target_after) == (Decimal("99.9"), Decimal("99.5"))

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--freshness-target", "most"], "'most' is not a percentage"),
            (["--freshness-target", "0"], "'0' must be more than 0 and at most 100"),
            (["--freshness-target", "100.5"], "must be more than 0 and at most 100"),
            (["--freshness-target", "NaN"], "must be more than 0 and at most 100"),
            (["--freshness-target", "99.9999"], "has more than three decimal places"),
            (["--protection-window-days", "0"], "must be at least 1"),
            (["--protection-window-days", "a month"], "is not a whole number"),
        ],
    )
    def test_a_bad_target_or_window_is_one_line_and_changes_nothing(self, args, message):
        run("add_pair", "p", "--source", "a-src", "--backup", "a-bak")
        with pytest.raises(CommandError, match=message) as caught:
            run("add_pair", "p", "--source", "a-src", "--backup", "a-bak", *args)
        assert "\n" not in str(caught.value)
        pair = BucketPair.objects.get(name="p")
        assert (pair.freshness_target, pair.protection_window_days) == (Decimal("99.9"), 30)
        assert not pair.objective_changes.exists()

    def test_a_leading_slash_of_a_prefix_is_kept(self):
        run("add_pair", "logs", "--source", "logs-src//logs", "--backup", "logs-bak/copies")
        pair = BucketPair.objects.get(name="logs")
        assert (pair.source_prefix, pair.backup_prefix) == ("/logs/", "copies/")

    @pytest.mark.parametrize("source", ["logs-src/ logs/", "logs-src/logs/ "])
    def test_a_prefix_with_surrounding_whitespace_is_refused_with_one_line(self, source):
        with pytest.raises(CommandError) as caught:
            run("add_pair", "logs", "--source", source, "--backup", "logs-bak")
        assert str(caught.value).startswith("source_prefix: ")
        assert "whitespace" in str(caught.value) and "\n" not in str(caught.value)
        assert not BucketPair.objects.exists()

    def test_an_invalid_name_is_refused(self):
        with pytest.raises(CommandError, match="name"):
            run("add_pair", "no spaces", "--source", "a-src", "--backup", "a-bak")


class TestCreateIngestKey:
    def test_prints_the_key_id_and_secret_once(self):
        out, err = run("create_ingest_key", "prod-lambda")
        key = IngestKey.objects.get(name="prod-lambda")
        assert f"REPORT_KEY_ID={key.key_id}" in out
        assert f"REPORT_SECRET={key.secret}" in out
        assert "shown this once" in err

    def test_json_output_is_one_object(self):
        out, _ = run("create_ingest_key", "fn", "--json")
        data = json.loads(out)
        key = IngestKey.objects.get(name="fn")
        assert data == {"name": "fn", "key_id": key.key_id, "secret": key.secret}

    def test_a_duplicate_name_fails_cleanly(self):
        make_ingest_key(name="fn")
        with pytest.raises(CommandError, match="already exists"):
            run("create_ingest_key", "fn")
        assert IngestKey.objects.count() == 1

    def test_keys_get_distinct_ids_and_secrets(self):
        first, second = make_ingest_key(), make_ingest_key()
        assert first.key_id != second.key_id
        assert first.secret != second.secret
        assert len(first.secret) >= 40


class TestEnsureSuperuser:
    def test_creates_admin_once_with_a_printed_password(self, django_user_model):
        out, _ = run("ensure_superuser")
        password = out.split("password '")[1].split("'")[0]
        user = django_user_model.objects.get(username="admin")
        assert user.is_superuser and user.check_password(password)
        again, _ = run("ensure_superuser")
        assert again == ""
        assert django_user_model.objects.count() == 1

    def test_is_refused_in_production(self, settings):
        settings.PRODUCTION = True
        with pytest.raises(CommandError, match="refused in production"):
            run("ensure_superuser")
