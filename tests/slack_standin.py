"""A local stand-in for the Slack Web API and for response_urls: records every call, answers in Slack's shapes.

The app reaches it through SLACK_API_URL (http://127.0.0.1:PORT/api/); response_urls handed to
the app point at http://127.0.0.1:PORT/response/ID.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier

BOT_USER = "UBOTUSER1"


class SlackStandIn:
    def __init__(self, emails: dict[str, str] | None = None):
        self.calls: list[tuple[str, dict]] = []  # (API method, arguments)
        self.responses: list[tuple[str, dict]] = []  # (response_url id, JSON posted)
        self.first_arrival: dict[str, float] = {}  # response_url id -> time.perf_counter() of its first post
        self.emails = dict(emails or {})  # email -> user ID for users.lookupByEmail
        self.uploads: dict[str, bytes] = {}  # file id -> bytes uploaded to its upload URL
        self.fail_methods: dict[str, str] = {}  # API method -> the error it answers with
        self._changed = threading.Condition()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, answer = standin._handle(self.path, self.headers.get("Content-Type", ""), raw)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.api_url = f"{self.base}/api/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._changed:
            self.calls.clear()
            self.responses.clear()
            self.uploads.clear()
            self.fail_methods.clear()
            self.first_arrival.clear()

    def response_url(self) -> str:
        return f"{self.base}/response/{uuid.uuid4().hex}"

    # -- what the app sent ------------------------------------------------------------

    def _handle(self, path: str, content_type: str, raw: bytes) -> tuple[int, dict]:
        if path.startswith("/upload/"):  # the file's bytes, as files.getUploadURLExternal's URL receives them
            with self._changed:
                self.uploads[path.rsplit("/", 1)[1]] = raw
                self._changed.notify_all()
            return 200, {"ok": True}
        if "json" in content_type:
            args = json.loads(raw or b"{}")
        else:
            args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        with self._changed:
            if path.startswith("/response/"):
                response_id = path.rsplit("/", 1)[1]
                self.first_arrival.setdefault(response_id, time.perf_counter())
                self.responses.append((response_id, args))
                self._changed.notify_all()
                return 200, {"ok": True}
            method = path.removeprefix("/api/")
            self.calls.append((method, args))
            self._changed.notify_all()
        return 200, self._answer(method, args)

    def _answer(self, method: str, args: dict) -> dict:
        if method in self.fail_methods:
            return {"ok": False, "error": self.fail_methods[method]}
        if method == "files.getUploadURLExternal":
            file_id = f"F{uuid.uuid4().hex[:10].upper()}"
            return {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = json.loads(args["files"]) if isinstance(args.get("files"), str) else args.get("files", [])
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
        if method == "auth.test":
            return {"ok": True, "url": "https://example.slack.com/", "team": "Example", "user": "ecr-cost",
                    "team_id": "T0EXAMPLE", "user_id": BOT_USER, "bot_id": "B0ECRCOST"}
        if method == "users.lookupByEmail":
            user_id = self.emails.get(args.get("email", ""))
            return {"ok": True, "user": {"id": user_id}} if user_id else {"ok": False, "error": "users_not_found"}
        if method in ("chat.postMessage", "chat.postEphemeral", "chat.update"):
            return {"ok": True, "channel": args.get("channel"), "ts": f"{time.time():.6f}",
                    "message": {"text": args.get("text")}}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D0DMCHANNEL"}}
        if method == "views.publish":
            view = args.get("view", {})
            return {"ok": True, "view": {"id": "V0HOME", **(json.loads(view) if isinstance(view, str) else view)}}
        return {"ok": True}

    def wait_for(self, predicate, timeout: float = 15.0):
        """Waits until predicate(calls, responses) returns something truthy, and returns it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = predicate(self.calls, self.responses)
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"stand-in saw calls {[c[0] for c in self.calls]} and "
                                       f"{len(self.responses)} responses")
                self._changed.wait(remaining)


def signed_headers(secret: str, body: str, timestamp: int | None = None, content_type: str =
                   "application/x-www-form-urlencoded") -> dict[str, str]:
    """Headers exactly as Slack signs a request: v0=HMAC-SHA256(secret, 'v0:{ts}:{body}')."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature,
            "Content-Type": content_type}
