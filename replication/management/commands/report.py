from pathlib import Path

from django.contrib.staticfiles import finders
from django.core.management.base import BaseCommand, CommandError
from django.template.loader import render_to_string
from django.utils import timezone

from replication.evidence.export import csv_text
from replication.evidence.freshness import parse_month
from replication.evidence.report import NoReport, build_report
from replication.models import BucketPair

# The page's stylesheets, inlined so the file opens and prints anywhere.
STYLESHEETS = ("dashboard/site.css", "dashboard/evidence.css")


class Command(BaseCommand):
    help = (
        "Write a pair's monthly evidence report (freshness, reconcile coverage, health and "
        "alerts) as CSV or a standalone HTML page. Exits 1 with one line when there is no "
        "such pair or month."
    )

    def add_arguments(self, parser):
        parser.add_argument("pair", help="the pair's name")
        parser.add_argument("--month", required=True, help="YYYY-MM (UTC calendar month)")
        parser.add_argument("--format", choices=["csv", "html"], default="csv")
        parser.add_argument("--output", help="write to this file instead of standard output")

    def handle(self, *args, **options):
        pair = BucketPair.objects.filter(name=options["pair"]).first()
        if pair is None:
            raise CommandError(f"No pair named {options['pair']!r}.")
        month = parse_month(options["month"])
        if month is None:
            raise CommandError(f"{options['month']!r} is not a month: give it as YYYY-MM.")
        try:
            report = build_report(pair, month, timezone.now())
        except NoReport as problem:
            raise CommandError(str(problem)) from None
        if options["format"] == "csv":
            text = csv_text(report)
        else:
            css = "\n".join(Path(finders.find(name)).read_text() for name in STYLESHEETS)
            text = render_to_string("evidence/report_document.html", {"report": report, "css": css})
        if options["output"]:
            try:
                Path(options["output"]).write_text(text, encoding="utf-8")
            except OSError as error:
                raise CommandError(f"Cannot write {options['output']}: {error.strerror}.") from None
        else:
            self.stdout.write(text, ending="")
