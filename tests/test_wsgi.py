"""The web worker's start-up (backupsite/wsgi.py, what gunicorn imports)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_web_worker_freezes_what_start_up_loaded_so_full_collections_skip_it():
    # In a fresh interpreter: this test process has long since frozen or collected its own.
    frozen = subprocess.run(
        [sys.executable, "-c", "import gc, backupsite.wsgi; print(gc.get_freeze_count())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Django and the apps are some eighty thousand objects; unfrozen, none is.
    assert int(frozen) > 50_000
