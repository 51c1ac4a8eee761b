import argparse
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from replication.buckets import split_location
from replication.models import BucketPair


def _non_negative(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must not be negative")
    return number


def _positive(value: str) -> int:
    number = _non_negative(value)
    if number == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _percent(value: str) -> Decimal:
    """A freshness target: more than 0, at most 100, to three decimal places ("99.9" or
    "99.9%"), as the pair's field stores it."""
    try:
        number = Decimal(value.strip().removesuffix("%"))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{value!r} is not a percentage") from None
    if not number.is_finite() or not 0 < number <= 100:
        raise argparse.ArgumentTypeError(f"{value!r} must be more than 0 and at most 100")
    if number != number.quantize(Decimal("0.001")):
        raise argparse.ArgumentTypeError(f"{value!r} has more than three decimal places")
    return number


class Command(BaseCommand):
    help = (
        "Register a bucket pair, or update the one with this name. Options left out keep "
        "their current value (or the default, for a new pair)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="short identifier (letters, digits, - and _)")
        parser.add_argument("--source", required=True, metavar="BUCKET[/PREFIX]")
        parser.add_argument("--backup", required=True, metavar="BUCKET[/PREFIX]")
        parser.add_argument("--region", help="the buckets' AWS region (default us-east-1)")
        parser.add_argument(
            "--grace", type=_non_negative, metavar="SECONDS", help="in-flight grace period"
        )
        parser.add_argument(
            "--reconcile-every",
            type=_positive,
            metavar="MINUTES",
            help="scheduled reconcile interval",
        )
        parser.add_argument("--no-schedule", action="store_true", help="reconcile only on demand")
        parser.add_argument("--lag-objective", type=_positive, metavar="SECONDS")
        parser.add_argument(
            "--freshness-target",
            type=_percent,
            metavar="PERCENT",
            help="share of copies a month that must meet the lag objective (default 99.9)",
        )
        parser.add_argument(
            "--protection-window-days",
            type=_positive,
            metavar="DAYS",
            help="how far back earlier versions must stay restorable (default 30)",
        )
        parser.add_argument(
            "--mirror-deletes",
            action=argparse.BooleanOptionalAction,
            help="delete backup copies of objects deleted from the source",
        )
        parser.add_argument(
            "--enabled", action=argparse.BooleanOptionalAction, help="enable or disable the pair"
        )

    def handle(self, *args, **options):
        if options["no_schedule"] and options["reconcile_every"]:
            raise CommandError("--no-schedule and --reconcile-every contradict each other")
        source_bucket, source_prefix = split_location(options["source"])
        backup_bucket, backup_prefix = split_location(options["backup"])

        with transaction.atomic():
            pair = BucketPair.objects.select_for_update().filter(name=options["name"]).first()
            created = pair is None
            if created:
                pair = BucketPair(name=options["name"])
            pair.source_bucket, pair.source_prefix = source_bucket, source_prefix
            pair.backup_bucket, pair.backup_prefix = backup_bucket, backup_prefix
            optional = {
                "region": options["region"],
                "grace_seconds": options["grace"],
                "reconcile_every_minutes": options["reconcile_every"],
                "lag_objective_seconds": options["lag_objective"],
                "freshness_target": options["freshness_target"],
                "protection_window_days": options["protection_window_days"],
                "mirror_deletes": options["mirror_deletes"],
                "enabled": options["enabled"],
            }
            for field, value in optional.items():
                if value is not None:
                    setattr(pair, field, value)
            if options["no_schedule"]:
                pair.reconcile_every_minutes = None
            try:
                pair.full_clean()
            except ValidationError as exc:
                raise CommandError(_one_line(exc)) from None
            pair.save()

        verb = "Registered" if created else "Updated"
        schedule = (
            f"every {pair.reconcile_every_minutes} min"
            if pair.reconcile_every_minutes
            else "on demand"
        )
        self.stdout.write(
            f"{verb} pair {pair.name}: s3://{pair.source_location} -> "
            f"s3://{pair.backup_location} (grace {pair.grace_seconds} s, reconcile {schedule}, "
            f"deletes {'mirrored' if pair.mirror_deletes else 'kept'}, "
            f"{pair.freshness_target.normalize():f}% of copies within "
            f"{pair.lag_objective_seconds} s, protection window {pair.protection_window_days} d)"
        )


def _one_line(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join(
            f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
            for field, messages in exc.message_dict.items()
        )
    return " ".join(exc.messages)
