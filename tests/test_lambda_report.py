"""The report: one signed POST per invocation, retried briefly, never blocking a copy."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from replication import lambda_function
from replication.ingest import signing
from replication.ingest.schema import parse_batch
from replication.lambda_function import ReplicationFailed, report_bodies
from tests.lambda_support import (
    BACKUP,
    SOURCE,
    FakeContext,
    answer_with_error,
    backup_keys,
    invoke,
    put_event,
    s3_event,
    sqs_event,
    sqs_message,
)

SECRET = "s3cr3t-for-tests"


class ReportServer:
    """A local HTTP endpoint that records what it receives and answers with given statuses."""

    def __init__(self, statuses=(202,)):
        self.statuses = list(statuses)
        self.requests: list[tuple[dict, bytes]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append((dict(self.headers), body))
                status = server.statuses.pop(0) if len(server.statuses) > 1 else server.statuses[0]
                reply = b'{"accepted": 1, "duplicates": 0, "rejected": []}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/api/v1/events"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def events(self, index: int = 0) -> list[dict]:
        return json.loads(self.requests[index][1])["events"]


def report_env(url: str) -> dict:
    return {"REPORT_URL": url, "REPORT_KEY_ID": "bk_0123456789abcdef", "REPORT_SECRET": SECRET}


def closed_port_url() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_port
    server.server_close()
    return f"http://127.0.0.1:{port}/api/v1/events"


def test_report_signature_verifies_with_the_servers_own_code(s3, monkeypatch):
    event = s3_event(*put_event(s3, "a b+c.txt")["Records"], *put_event(s3, "d")["Records"])

    with ReportServer() as server:
        invoke(monkeypatch, s3, event, **report_env(server.url))

    assert len(server.requests) == 1  # one POST per invocation, every record in it
    headers, body = server.requests[0]
    assert headers["X-Backup-Key"] == "bk_0123456789abcdef"
    signing.verify(SECRET, headers["X-Backup-Timestamp"], headers["X-Backup-Signature"], body)
    with pytest.raises(signing.SignatureError):
        signing.verify(
            "another secret", headers["X-Backup-Timestamp"], headers["X-Backup-Signature"], body
        )


def test_report_body_passes_the_servers_schema_with_every_field(s3, monkeypatch):
    event = put_event(s3, "dir/a b+c.txt", b"12345")
    record = event["Records"][0]

    with ReportServer() as server:
        invoke(monkeypatch, s3, event, context=FakeContext("req-1"), **report_env(server.url))

    (stored,) = parse_batch(server.requests[0][1], max_events=1000)
    assert (stored.source_bucket, stored.destination_bucket) == (SOURCE, BACKUP)
    assert stored.key == "dir/a b+c.txt"  # the source key, decoded
    assert stored.event_name == "ObjectCreated:Put"
    assert stored.sequencer == record["s3"]["object"]["sequencer"]
    assert stored.size == 5
    assert stored.etag == record["s3"]["object"]["eTag"]
    assert (stored.status, stored.error_code, stored.error_message) == ("copied", "", "")
    assert stored.event_time <= stored.started_at <= stored.finished_at
    assert (stored.request_id, stored.attempt) == ("req-1", 1)


def test_report_carries_sqs_receive_count_as_attempt(s3, monkeypatch):
    body = json.dumps(put_event(s3, "k"))

    with ReportServer() as server:
        invoke(
            monkeypatch,
            s3,
            sqs_event(sqs_message(body, message_id="m", receive_count=3)),
            **report_env(server.url),
        )

    assert server.events()[0]["attempt"] == 3


def test_access_denied_is_reported_failed_before_the_handler_raises(s3, monkeypatch):
    event = put_event(s3, "secret.txt")
    answer_with_error(s3, "CopyObject", status=403, code="AccessDenied")

    with ReportServer() as server, pytest.raises(ReplicationFailed):
        invoke(monkeypatch, s3, event, **report_env(server.url))

    (reported,) = server.events()
    assert (reported["status"], reported["error_code"]) == ("failed", "AccessDenied")
    assert reported["error_message"].startswith("access denied: ")


def test_report_server_down_still_copies_and_logs_the_lost_report(s3, monkeypatch, caplog):
    event = put_event(s3, "k.txt", b"data")

    result = invoke(
        monkeypatch,
        s3,
        event,
        context=FakeContext(remaining_ms=2500),
        **report_env(closed_port_url()),
    )

    assert result["copied"] == 1
    assert backup_keys(s3) == ["k.txt"]
    assert any("report not delivered" in r.getMessage() for r in caplog.records)


def test_report_is_retried_after_a_server_error(s3, monkeypatch):
    with ReportServer(statuses=(503, 202)) as server:
        invoke(monkeypatch, s3, put_event(s3, "k"), **report_env(server.url))

    assert len(server.requests) == 2
    assert server.requests[0][1] == server.requests[1][1]


def test_report_refused_as_bad_request_is_not_sent_again(s3, monkeypatch):
    with ReportServer(statuses=(400,)) as server:
        result = invoke(monkeypatch, s3, put_event(s3, "k"), **report_env(server.url))

    assert len(server.requests) == 1
    assert result["copied"] == 1


def test_report_is_not_attempted_without_time_left(s3, monkeypatch):
    with ReportServer() as server:
        result = invoke(
            monkeypatch,
            s3,
            put_event(s3, "k"),
            context=FakeContext(remaining_ms=900),
            **report_env(server.url),
        )

    assert server.requests == []
    assert result["copied"] == 1


def test_without_report_url_results_go_to_the_log_only(s3, monkeypatch, caplog):
    caplog.set_level("INFO", logger="backupsite.replicator")

    result = invoke(monkeypatch, s3, put_event(s3, "k"))

    assert result["copied"] == 1
    assert any('"status": "copied"' in r.getMessage() for r in caplog.records)


def test_report_bodies_stay_within_the_apis_limits():
    entries = [{"key": f"k{i}", "pad": "x" * 2000} for i in range(1500)]

    bodies = list(report_bodies(entries))

    assert all(len(body) <= 1024 * 1024 for body in bodies)
    assert all(len(json.loads(body)["events"]) <= 1000 for body in bodies)
    keys = [event["key"] for body in bodies for event in json.loads(body)["events"]]
    assert keys == [f"k{i}" for i in range(1500)]


def test_lambda_signing_copy_matches_the_server_signing():
    body = b'{"events": []}'

    assert lambda_function.sign(SECRET, 1764244800, body) == signing.sign(SECRET, 1764244800, body)


# --- Redirects --------------------------------------------------------------------------------


class RedirectingSite:
    """A site whose /old/events answers ``code`` pointing at /api/v1/events, where reports
    are accepted; every request is recorded with its method, so a POST turned GET shows."""

    def __init__(self, code: int):
        self.requests: list[tuple[str, str, dict, bytes]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                site.requests.append((self.command, self.path, dict(self.headers), body))
                if self.path == "/old/events":
                    self.send_response(code)
                    self.send_header("Location", "/api/v1/events")
                elif self.command == "POST":
                    self.send_response(202)
                else:
                    self.send_response(405)  # what the ingest API answers to a GET
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("code", [307, 308])
def test_a_report_redirected_with_307_or_308_is_posted_on_with_its_body_and_signature(
    s3, monkeypatch, code, caplog
):
    with RedirectingSite(code) as site:
        invoke(monkeypatch, s3, put_event(s3, "k"), **report_env(site.base + "/old/events"))

    # The guard's lookup (GET .../guard) goes to the same site; only the reports count here.
    (first, second) = [r for r in site.requests if r[1].endswith("/events")]
    assert (first[0], first[1]) == ("POST", "/old/events")
    assert (second[0], second[1]) == ("POST", "/api/v1/events")
    assert second[3] == first[3] and json.loads(second[3])["events"][0]["key"] == "k"
    headers = second[2]
    signing.verify(SECRET, headers["X-Backup-Timestamp"], headers["X-Backup-Signature"], second[3])
    assert any(f"{site.base}/api/v1/events" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("code", [301, 302, 303])
def test_a_report_redirected_with_301_302_or_303_is_a_configuration_error_said_loudly(
    s3, monkeypatch, code, caplog
):
    with RedirectingSite(code) as site:
        result = invoke(
            monkeypatch, s3, put_event(s3, "k"), **report_env(site.base + "/old/events")
        )

    assert result["copied"] == 1  # the copy stands; only the report is lost
    # Never resent as a GET (which the site would refuse), and not retried: it cannot work.
    reports = [(method, path) for method, path, *_ in site.requests if path.endswith("/events")]
    assert reports == [("POST", "/old/events")]
    (logged,) = [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.levelname == "ERROR" and "report not delivered" in r.getMessage()
    ]
    assert logged["message"] == "report not delivered: REPORT_URL is misconfigured"
    assert f"set REPORT_URL to {site.base}/api/v1/events" in logged["error"]


@pytest.mark.parametrize(
    ("url", "code", "location", "expected"),
    [
        (
            "http://site/api/v1/events",
            308,
            "https://site/api/v1/events",
            "https://site/api/v1/events",
        ),
        ("https://site/a/events", 307, "/api/v1/events", "https://site/api/v1/events"),
        ("https://site/api/v1/events", 308, "http://site/api/v1/events", None),
        ("https://site/api/v1/events", 307, "ftp://site/x", None),
        ("https://site/api/v1/events", 307, None, None),
        ("http://site/api/v1/events", 301, "https://site/api/v1/events", None),
    ],
)
def test_only_307_and_308_to_http_or_https_without_leaving_https_are_followed(
    url, code, location, expected
):
    target, problem = lambda_function.follow_redirect(url, code, location)
    assert target == expected
    assert bool(problem) == (expected is None)
