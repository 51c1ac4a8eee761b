import json

import boto3
import pytest
from django.contrib import messages as msg
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from replication import access, s3
from replication.models import BucketPair, IngestKey, ReconcileRun
from tests.factories import make_ingest_key

pytestmark = pytest.mark.django_db


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def run_check_access(client, pair):
    return client.post(
        reverse("admin:replication_bucketpair_changelist"),
        {"action": "check_access", "_selected_action": [pair.pk]},
        follow=True,
    )


class TestPages:
    def test_pair_list_add_and_change_pages_render(self, admin_client, pair):
        for url in (
            reverse("admin:replication_bucketpair_changelist"),
            reverse("admin:replication_bucketpair_changelist") + "?q=photos&enabled__exact=1",
            reverse("admin:replication_bucketpair_add"),
            reverse("admin:replication_bucketpair_change", args=[pair.pk]),
        ):
            assert admin_client.get(url).status_code == 200, url

    def test_pair_page_shows_the_lambda_environment_and_iam_policy(self, admin_client, pair):
        key = make_ingest_key(name="prod-lambda")
        page = admin_client.get(reverse("admin:replication_bucketpair_change", args=[pair.pk]))
        html = page.content.decode()
        assert "DESTINATION_BUCKET" in html and "photos-bak" in html
        assert key.key_id in html
        assert "/api/v1/events" in html
        assert "arn:aws:s3:::photos-src/*" in html
        assert key.secret not in html

    def test_adding_a_pair_with_overlapping_prefixes_shows_the_reason(self, admin_client):
        response = admin_client.post(
            reverse("admin:replication_bucketpair_add"),
            {
                "name": "loop",
                "enabled": "on",
                "source_bucket": "data-bucket",
                "source_prefix": "",
                "backup_bucket": "data-bucket",
                "backup_prefix": "backup",
                "region": "us-east-1",
                "grace_seconds": 900,
                "lag_objective_seconds": 900,
            },
        )
        assert response.status_code == 200
        assert "the backup would copy itself" in response.content.decode()

    def test_adding_a_pair_with_whitespace_around_a_prefix_shows_the_reason(self, admin_client):
        response = admin_client.post(
            reverse("admin:replication_bucketpair_add"),
            {
                "name": "logs",
                "enabled": "on",
                "source_bucket": "logs-src",
                "source_prefix": "logs/ ",
                "backup_bucket": "logs-bak",
                "backup_prefix": "",
                "region": "us-east-1",
                "grace_seconds": 900,
                "lag_objective_seconds": 900,
            },
        )
        assert response.status_code == 200
        assert "begins or ends with whitespace" in response.content.decode()
        assert not BucketPair.objects.exists()

    def test_a_pair_added_with_a_leading_slash_keeps_it(self, admin_client):
        form = {**PAIR_FORM, "name": "logs", "source_bucket": "logs-src", "source_prefix": "/logs"}
        admin_client.post(reverse("admin:replication_bucketpair_add"), form)
        assert BucketPair.objects.get(name="logs").source_prefix == "/logs/"


class TestIngestKeys:
    def test_creating_a_key_shows_its_secret_once(self, admin_client):
        response = admin_client.post(reverse("admin:replication_ingestkey_add"), {"name": "fn"})
        key = IngestKey.objects.get(name="fn")
        assert key.secret in response.content.decode()
        assert "no-store" in response["Cache-Control"]
        for url in (
            reverse("admin:replication_ingestkey_changelist"),
            reverse("admin:replication_ingestkey_change", args=[key.pk]),
        ):
            assert key.secret not in admin_client.get(url).content.decode()

    def test_revoking_keys_marks_them_revoked(self, admin_client):
        key = make_ingest_key()
        admin_client.post(
            reverse("admin:replication_ingestkey_changelist"),
            {"action": "revoke", "_selected_action": [key.pk]},
        )
        key.refresh_from_db()
        assert not key.is_active
        assert not IngestKey.objects.active().exists()


PAIR_FORM = {
    "name": "photos",
    "enabled": "on",
    "source_bucket": "photos-src",
    "source_prefix": "",
    "backup_bucket": "photos-bak",
    "backup_prefix": "",
    "region": "us-east-1",
    "grace_seconds": 900,
    "lag_objective_seconds": 900,
    "freshness_target": "99.9",
    "protection_window_days": 30,
    "guard_min_changes": 500,
    "guard_factor": 10,
    "restore_drill_every_days": 7,
    "drill_max_bytes": 1024**3,
    "drill_scratch": "",
    "AlertChannel_pairs-TOTAL_FORMS": 0,
    "AlertChannel_pairs-INITIAL_FORMS": 0,
}


@mock_aws
class TestSaveChecksAccess:
    def test_a_pair_whose_buckets_do_not_exist_saves_with_a_warning_not_silently(
        self, admin_client
    ):
        response = admin_client.post(
            reverse("admin:replication_bucketpair_add"), PAIR_FORM, follow=True
        )
        assert response.status_code == 200
        assert BucketPair.objects.filter(name="photos").exists()
        warnings = [str(m) for m in get_messages(response.wsgi_request) if m.level == msg.WARNING]
        assert "Pair photos: access check: Source: bucket 'photos-src' does not exist." in warnings
        assert "Pair photos: access check: Backup: bucket 'photos-bak' does not exist." in warnings

    def test_a_pair_whose_buckets_work_saves_with_only_what_is_left_to_do(self, admin_client):
        client = boto3.client("s3", region_name="us-east-1")
        for name in ("photos-src", "photos-bak"):
            client.create_bucket(Bucket=name)
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        response = admin_client.post(
            reverse("admin:replication_bucketpair_add"), PAIR_FORM, follow=True
        )
        assert BucketPair.objects.filter(name="photos").exists()
        warnings = [str(m) for m in get_messages(response.wsgi_request) if m.level == msg.WARNING]
        # Both buckets exist, versioned and writable: what is left is the missing trigger.
        assert len(warnings) == 1
        assert "sends no event notifications" in warnings[0]

    def test_a_check_that_cannot_run_does_not_stop_the_save(self, admin_client, monkeypatch):
        def broken(*args, **kwargs):
            raise RuntimeError("no credentials configured")

        monkeypatch.setattr(access, "check_pair", broken)
        response = admin_client.post(
            reverse("admin:replication_bucketpair_add"), PAIR_FORM, follow=True
        )
        assert BucketPair.objects.filter(name="photos").exists()
        assert "Pair photos: the access check could not run: no credentials configured" in (
            messages_of(response)
        )


@mock_aws
class TestCheckAccess:
    def setup_buckets(self, *names, versioned=()):
        client = boto3.client("s3", region_name="us-east-1")
        for name in names:
            client.create_bucket(Bucket=name)
        for name in versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return client

    def test_missing_buckets_are_reported_as_messages(self, admin_client, pair):
        messages = messages_of(run_check_access(admin_client, pair))
        assert "Pair photos: Source: bucket 'photos-src' does not exist." in messages
        assert "Pair photos: Backup: bucket 'photos-bak' does not exist." in messages

    def test_healthy_buckets_are_reported_ok_with_advice(self, admin_client, pair):
        self.setup_buckets("photos-src", "photos-bak", versioned=["photos-bak"])
        messages = messages_of(run_check_access(admin_client, pair))
        assert "Pair photos: Source 'photos-src' exists and can be listed." in messages
        assert "Pair photos: Backup 'photos-bak' is writable." in messages
        assert "Pair photos: Backup 'photos-bak' has versioning enabled." in messages
        assert any("sends no event notifications" in m for m in messages)
        assert any("copies cannot pin" in m for m in messages)

    def test_the_write_probe_leaves_nothing_behind(self, admin_client, pair):
        client = self.setup_buckets("photos-src", "photos-bak")
        run_check_access(admin_client, pair)
        assert client.list_objects_v2(Bucket="photos-bak")["KeyCount"] == 0

    def test_event_notifications_are_detected(self, admin_client, pair):
        client = self.setup_buckets("photos-src", "photos-bak")
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="photos-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        client.put_bucket_notification_configuration(
            Bucket="photos-src",
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": queue_arn["Attributes"]["QueueArn"],
                        "Events": ["s3:ObjectCreated:*"],
                    }
                ]
            },
        )
        messages = messages_of(run_check_access(admin_client, pair))
        assert "Pair photos: Source sends event notifications (QueueConfigurations)." in messages


@set_initial_no_auth_action_count(5)
@mock_aws
def test_denied_access_is_reported_as_messages_not_a_traceback(admin_client, pair, monkeypatch):
    s3_admin = boto3.client("s3", region_name="us-east-1")
    s3_admin.create_bucket(Bucket="photos-src")
    s3_admin.create_bucket(Bucket="photos-bak")
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="dashboard")
    iam.put_user_policy(
        UserName="dashboard",
        PolicyName="nothing-useful",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"}],
            }
        ),
    )
    credentials = iam.create_access_key(UserName="dashboard")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["SecretAccessKey"])
    s3.reset_clients()

    response = run_check_access(admin_client, pair)

    assert response.status_code == 200
    messages = messages_of(response)
    assert (
        "Pair photos: Source: access to bucket 'photos-src' is denied (AccessDenied)." in messages
    )
    assert (
        "Pair photos: Backup: access to bucket 'photos-bak' is denied (AccessDenied)." in messages
    )


class TestReconcileFromTheAdmin:
    @mock_aws
    def test_reconcile_now_runs_the_pair_and_says_so(self, admin_client, pair):
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in ("photos-src", "photos-bak"):
            client.create_bucket(Bucket=bucket)
        client.put_object(Bucket="photos-src", Key="a.jpg", Body=b"a")
        response = admin_client.post(
            reverse("admin:replication_bucketpair_changelist"),
            {"action": "reconcile_now", "_selected_action": [pair.pk]},
            follow=True,
        )
        run = ReconcileRun.objects.get(pair=pair)
        assert run.status == ReconcileRun.Status.SUCCEEDED
        assert run.source_objects == 1
        run_page = reverse("dashboard:run", args=[run.pk])
        # The verdict, not "is succeeded", and a link to the run's page.
        [message] = messages_of(response)
        assert message.startswith(f"Run #{run.pk} of photos finished: {run.get_verdict_display()}")
        assert f'<a href="{run_page}">see the run</a>' in message
        assert "succeeded" not in message
        page = admin_client.get(run_page)
        assert page.status_code == 200

    def test_staff_without_the_permission_cannot_start_a_run(self, client, pair, django_user_model):
        staff = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
        staff.user_permissions.add(Permission.objects.get(codename="view_bucketpair"))
        client.force_login(staff)
        changelist = client.get(reverse("admin:replication_bucketpair_changelist"))
        assert "reconcile_now" not in changelist.content.decode()
        client.post(
            reverse("admin:replication_bucketpair_changelist"),
            {"action": "reconcile_now", "_selected_action": [pair.pk]},
        )
        assert not ReconcileRun.objects.exists()

    def test_runs_and_object_states_are_listed_read_only(self, admin_client, pair):
        for name in ("reconcilerun", "objectstate"):
            assert (
                admin_client.get(reverse(f"admin:replication_{name}_changelist")).status_code == 200
            )
            assert admin_client.get(reverse(f"admin:replication_{name}_add")).status_code == 403


def test_the_key_add_form_shows_no_key_id_that_the_save_would_not_keep(admin_client):
    page = admin_client.get(reverse("admin:replication_ingestkey_add")).content.decode()
    assert "bk_" not in page

    admin_client.post(reverse("admin:replication_ingestkey_add"), {"name": "fn"})
    key = IngestKey.objects.get(name="fn")
    change = admin_client.get(reverse("admin:replication_ingestkey_change", args=[key.pk]))
    assert key.key_id in change.content.decode()


def test_pair_and_run_lists_load_the_stylesheet_that_wraps_their_headers(admin_client):
    for name in ("bucketpair", "reconcilerun", "ingestkey"):
        page = admin_client.get(reverse(f"admin:replication_{name}_changelist")).content.decode()
        assert "replication/admin.css" in page
