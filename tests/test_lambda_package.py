"""package_lambda: a reproducible zip whose handler imports without Django."""

import io
import subprocess
import sys
import zipfile
from pathlib import Path

from django.core.management import call_command

from replication import lambda_function


def build(tmp_path: Path, name: str = "lambda.zip") -> Path:
    output = tmp_path / name
    call_command("package_lambda", "--output", str(output), stdout=io.StringIO())
    return output


def test_package_puts_the_handler_file_alone_at_the_zip_root(tmp_path):
    archive = build(tmp_path)

    with zipfile.ZipFile(archive) as zipped:
        assert zipped.namelist() == ["lambda_function.py"]
        assert zipped.read("lambda_function.py") == Path(lambda_function.__file__).read_bytes()


def test_package_builds_identical_bytes_every_time(tmp_path):
    first = build(tmp_path, "one.zip")
    second = build(tmp_path, "two.zip")

    assert first.read_bytes() == second.read_bytes()


def test_packaged_handler_imports_with_only_boto3_and_the_standard_library(tmp_path):
    archive = build(tmp_path)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import lambda_function; "
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'replication', "
        "'backupsite')); print(leaked); "
        "assert callable(lambda_function.lambda_handler) and not leaked"
    )

    # -I: isolated from this project's directory and environment, as the Lambda runtime is.
    completed = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(archive)], capture_output=True, text=True
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_package_prints_handler_and_digest(tmp_path):
    printed = io.StringIO()

    call_command("package_lambda", "--output", str(tmp_path / "lambda.zip"), stdout=printed)

    printed = printed.getvalue()
    assert "Handler: lambda_function.lambda_handler" in printed
    assert "SHA-256: " in printed
