"""A local HTTP receiver for alert webhooks, shared by the alert tests."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from replication.ingest.signing import SignatureError, verify


class Receiver:
    """A local HTTP endpoint that records every POST and checks its webhook signature."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: dict[str, list[int]] = {}  # by path: answers to give, then 200
        self.secret: str | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signed = None
                if receiver.secret is not None:
                    try:
                        verify(
                            receiver.secret,
                            self.headers.get("X-Backup-Timestamp", ""),
                            self.headers.get("X-Backup-Signature"),
                            body,
                        )
                        signed = True
                    except SignatureError:
                        signed = False
                receiver.requests.append(
                    {"path": self.path, "json": json.loads(body), "signed": signed}
                )
                answers = receiver.statuses.get(self.path)
                status = answers.pop(0) if answers else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def posts(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]


def running_receiver():
    """A Receiver serving on 127.0.0.1 and a free port, for a test module's fixture."""
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
