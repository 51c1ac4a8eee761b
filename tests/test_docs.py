"""The README and docs/ stand alone: their commands exist as written, their links stay inside."""

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.management import CommandError, get_commands, load_command_class

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"\.venv/bin/python manage\.py [^`\n\\]*(?:\\\n[^`\n\\]*)*")


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for match in COMMAND.finditer(doc.read_text()):
            line = match.group(0).replace("\\\n", " ").split("  #")[0]
            argv = shlex.split(line)[2:]
            # Usage synopses ("reconcile PAIR [--json]") are not commands to run.
            if argv and not argv[-1].endswith("...") and "[" not in line:
                found.append((f"{doc.name}: {line.strip()}", argv))
    return found


@pytest.mark.parametrize(("where", "argv"), documented_commands(), ids=lambda v: str(v)[:60])
def test_every_documented_command_exists_and_accepts_its_arguments(where, argv):
    name, *args = argv
    assert name in get_commands(), f"{where}: no command {name!r}"
    parser = load_command_class(get_commands()[name], name).create_parser("manage.py", name)
    try:
        parser.parse_args(args)
    except (SystemExit, CommandError):
        pytest.fail(f"{where}: the arguments are refused")


def test_the_docs_list_the_commands_people_need_first():
    names = {argv[0] for _, argv in documented_commands()}
    assert {"add_pair", "create_ingest_key", "reconcile", "package_lambda", "create_buckets"} <= (
        names
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_no_link_leaves_the_repository(doc):
    text = doc.read_text()
    assert "../shared" not in text
    for target in re.findall(r"\]\(([^)#\s]+)", text):
        if target.startswith(("http://", "https://")):
            # Only placeholders of the reader's own deployment (example.com) may appear.
            host = urlsplit(target).hostname or ""
            assert host.endswith("example.com"), f"{doc.name} links out: {target}"
            continue
        if target.startswith("mailto:"):
            continue
        path = (doc.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
        if not target.startswith("docs/screenshots/"):  # made by the dashboard's browser tests
            assert path.exists(), f"{doc.name} links to a missing file: {target}"
