import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from replication.buckets import (
    bucket_name_problem,
    normalize_prefix,
    prefix_problem,
    prefixes_overlap,
    split_location,
)
from replication.models import BucketPair
from tests.factories import make_pair


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("ab", "3 to 63 characters"),
        ("a" * 64, "3 to 63 characters"),
        ("My-Bucket", "lowercase letters"),
        ("under_score", "lowercase letters"),
        ("-leading", "begin and end with a letter or digit"),
        ("trailing.", "begin and end with a letter or digit"),
        ("two..dots", "two adjacent dots"),
        ("192.168.5.4", "IP address"),
        ("xn--punycode", "reserved prefix"),
        ("sthree-bucket", "reserved prefix"),
        ("amzn-s3-demo-bucket", "reserved prefix"),
        ("my-bucket-s3alias", "reserved suffix"),
        ("my-bucket--ol-s3", "reserved suffix"),
        ("my.mrap", "reserved suffix"),
        ("zone--x-s3", "reserved suffix"),
    ],
)
def test_bucket_names_breaking_s3_rules_are_refused_with_the_rule(name, problem):
    assert problem in bucket_name_problem(name)


@pytest.mark.parametrize("name", ["abc", "photos-2024", "logs.example.com", "a" * 63, "1bucket"])
def test_valid_bucket_names_pass(name):
    assert bucket_name_problem(name) is None


def test_prefixes_are_kept_as_s3_names_keys_with_a_slash_added_at_the_end():
    assert normalize_prefix("") == ""
    assert normalize_prefix("photos") == "photos/"
    assert normalize_prefix("a/b/") == "a/b/"
    # A leading slash is part of S3 keys: "/logs/" and "logs/" are different key spaces.
    assert normalize_prefix("/logs/") == "/logs/"
    assert normalize_prefix("/logs") == "/logs/"
    assert normalize_prefix("/") == "/"
    assert normalize_prefix("photos//") == "photos//"


@pytest.mark.parametrize("prefix", [" logs/", "logs/ ", "\tlogs", "logs\n", " "])
def test_prefixes_with_surrounding_whitespace_are_refused_not_trimmed(prefix):
    assert "whitespace" in prefix_problem(prefix)


@pytest.mark.parametrize("prefix", ["", "/", "/logs/", "my logs/", "a b"])
def test_prefixes_without_surrounding_whitespace_pass(prefix):
    assert prefix_problem(prefix) is None


def test_overlap_means_one_prefix_contains_the_other():
    assert prefixes_overlap("", "backup/")
    assert prefixes_overlap("data/", "data/backup/")
    assert not prefixes_overlap("data/", "backup/")
    assert not prefixes_overlap("data/", "database/")


def test_locations_split_into_bucket_and_prefix():
    assert split_location("s3://photos/raw") == ("photos", "raw/")
    assert split_location("photos") == ("photos", "")
    assert split_location("photos//logs") == ("photos", "/logs/")
    assert split_location("s3://photos//logs/") == ("photos", "/logs/")


@pytest.mark.django_db
class TestPairValidation:
    def test_a_valid_pair_is_saved_with_prefixes_as_s3_names_keys(self):
        pair = make_pair(source_prefix="/raw", backup_prefix="copies")
        pair.refresh_from_db()
        assert (pair.source_prefix, pair.backup_prefix) == ("/raw/", "copies/")
        assert pair.grace_seconds == 900
        assert pair.lag_objective_seconds == 900
        assert pair.mirror_deletes is False

    def test_a_pair_backing_up_into_its_own_source_is_refused(self):
        with pytest.raises(ValidationError) as caught:
            make_pair(source_bucket="data-bucket", backup_bucket="data-bucket")
        assert "must not be the source bucket itself" in str(caught.value)

    def test_overlapping_prefixes_in_one_bucket_are_refused(self):
        with pytest.raises(ValidationError) as caught:
            make_pair(
                source_bucket="data-bucket",
                backup_bucket="data-bucket",
                source_prefix="",
                backup_prefix="backup/",
            )
        assert "overlap: the backup would copy itself" in str(caught.value)

    def test_nested_prefixes_in_one_bucket_are_refused(self):
        with pytest.raises(ValidationError, match="overlap"):
            make_pair(
                source_bucket="data-bucket",
                backup_bucket="data-bucket",
                source_prefix="live/",
                backup_prefix="live/backup/",
            )

    def test_separate_prefixes_in_one_bucket_are_allowed(self):
        pair = make_pair(
            source_bucket="data-bucket",
            backup_bucket="data-bucket",
            source_prefix="live/",
            backup_prefix="backup/",
        )
        assert pair.pk

    def test_an_invalid_bucket_name_is_refused_with_its_rule(self):
        with pytest.raises(ValidationError) as caught:
            make_pair(source_bucket="Bad_Bucket")
        assert "is not a valid S3 bucket name" in str(caught.value)

    def test_pair_names_are_unique(self):
        make_pair(name="photos")
        with pytest.raises(ValidationError, match="already exists"):
            make_pair(name="photos")

    @pytest.mark.parametrize("field", ["source_prefix", "backup_prefix"])
    def test_a_prefix_with_surrounding_whitespace_is_refused_and_nothing_saved(self, field):
        with pytest.raises(ValidationError) as caught:
            make_pair(**{field: " logs/"})
        assert "whitespace" in str(caught.value.message_dict[field])
        assert not BucketPair.objects.exists()

    def test_a_pair_keeps_reading_the_key_space_its_prefix_names(self):
        pair = make_pair(source_prefix="/logs/")
        assert pair.relative_source_key("/logs/2026/a.gz") == "2026/a.gz"
        with pytest.raises(ValueError):
            pair.relative_source_key("logs/2026/a.gz")

    def test_a_zero_reconcile_interval_is_refused(self):
        with pytest.raises(ValidationError, match="reconcile_every_minutes"):
            make_pair(reconcile_every_minutes=0)


@pytest.mark.django_db
class TestPairDatabaseConstraints:
    """The database holds the rules even for writes that skip full_clean()."""

    def insert(self, **fields):
        values = {"name": "raw", "source_bucket": "source-a", "backup_bucket": "backup-a"}
        values.update(fields)
        with transaction.atomic():
            BucketPair.objects.create(**values)

    def test_database_refuses_a_backup_that_is_its_own_source(self):
        with pytest.raises(IntegrityError):
            self.insert(backup_bucket="source-a")

    def test_database_refuses_overlapping_prefixes(self):
        with pytest.raises(IntegrityError):
            self.insert(backup_bucket="source-a", source_prefix="a/", backup_prefix="a/b/")

    @pytest.mark.parametrize("prefix", [" logs/", "\tlogs/"])
    def test_database_refuses_a_prefix_beginning_with_whitespace(self, prefix):
        with pytest.raises(IntegrityError):
            self.insert(source_prefix=prefix)

    def test_database_refuses_a_prefix_without_its_trailing_slash(self):
        with pytest.raises(IntegrityError), transaction.atomic():
            BucketPair.objects.bulk_create(
                [
                    BucketPair(
                        name="raw", source_bucket="a-src", backup_bucket="a-bak", backup_prefix="x"
                    )
                ]
            )

    def test_database_allows_disjoint_prefixes_in_one_bucket(self):
        self.insert(backup_bucket="source-a", source_prefix="a/", backup_prefix="b/")
        assert BucketPair.objects.count() == 1

    def test_database_refuses_malformed_bucket_names(self):
        with pytest.raises(IntegrityError):
            self.insert(source_bucket="UPPER")

    def test_database_refuses_a_zero_interval(self):
        with pytest.raises(IntegrityError):
            self.insert(reconcile_every_minutes=0)

    def test_database_refuses_duplicate_names(self):
        self.insert()
        with pytest.raises(IntegrityError):
            self.insert(source_bucket="source-b", backup_bucket="backup-b")
