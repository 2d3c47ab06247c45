"""A local stand-in for the Slack Web API and for response_urls: records every call, answers in Slack's shapes.

The app reaches it through SLACK_API_URL (http://127.0.0.1:PORT/api/); response_urls handed to
the app point at http://127.0.0.1:PORT/response/ID.

With `SlackStandIn(socket_mode=True)` it also plays Slack's side of Socket Mode: `apps.connections.open`
(called with the app-level token) answers the URL of a local websocket server (`SocketModeStandIn`,
at `.socket`), which greets each connection with `hello`, delivers envelopes and records the app's acks.
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
# how long a wait for the app lasts before the test fails: a hang detector, not a latency check (bench/ measures
# latency), so long enough for a machine under load (tests/stress.sh); a wait that succeeds returns at once
DEADLINE = 60.0
APP_ID = "A0ECRCOST"


class SlackStandIn:
    def __init__(self, emails: dict[str, str] | None = None, socket_mode: bool = False):
        self.calls: list[tuple[str, dict]] = []  # (API method, arguments)
        self.authorizations: list[tuple[str, str | None]] = []  # (API method, its Authorization header)
        self.responses: list[tuple[str, dict]] = []  # (response_url id, JSON posted)
        self.first_arrival: dict[str, float] = {}  # response_url id -> time.perf_counter() of its first post
        self.emails = dict(emails or {})  # email -> user ID for users.lookupByEmail
        self.uploads: dict[str, bytes] = {}  # file id -> bytes uploaded to its upload URL
        self.fail_methods: dict[str, str] = {}  # API method -> the error it answers with
        self.history: dict[str, list[dict]] = {}  # channel -> messages posted (newest first), for conversations.history
        self.views: dict[str, dict] = {}  # view id -> the modal as last opened or updated (with its "hash")
        self._changed = threading.Condition()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stalls

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, answer = standin._handle(self.path, self.headers.get("Content-Type", ""), raw,
                                                 self.headers.get("Authorization"))
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
        self.socket: SocketModeStandIn | None = SocketModeStandIn() if socket_mode else None

    def stop(self) -> None:
        if self.socket is not None:
            self.socket.stop()
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._changed:
            self.calls.clear()
            self.authorizations.clear()
            self.responses.clear()
            self.uploads.clear()
            self.fail_methods.clear()
            self.history.clear()
            self.first_arrival.clear()
            self.views.clear()

    def response_url(self) -> str:
        return f"{self.base}/response/{uuid.uuid4().hex}"

    # -- what the app sent ------------------------------------------------------------

    def _handle(self, path: str, content_type: str, raw: bytes, authorization: str | None = None) -> tuple[int, dict]:
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
            self.authorizations.append((method, authorization))
            answer = self._answer(method, args, authorization)  # under the lock: what it records is seen with the call
            self._changed.notify_all()
        return 200, answer

    def _answer(self, method: str, args: dict, authorization: str | None = None) -> dict:
        if method in self.fail_methods:
            return {"ok": False, "error": self.fail_methods[method]}
        if method == "apps.connections.open" and self.socket is not None:
            # Slack answers this only for an app-level token (scope connections:write)
            if not (authorization or "").startswith("Bearer xapp-"):
                return {"ok": False, "error": "not_allowed_token_type"}
            return {"ok": True, "url": self.socket.issue_url()}
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
        if method == "chat.postMessage":
            ts = f"{time.time():.6f}"
            metadata = json.loads(args["metadata"]) if isinstance(args.get("metadata"), str) else args.get("metadata")
            self.history.setdefault(args.get("channel"), []).insert(0, {"type": "message", "ts": ts,
                                                                         "text": args.get("text"),
                                                                         "metadata": metadata})
            return {"ok": True, "channel": args.get("channel"), "ts": ts, "message": {"text": args.get("text")}}
        if method == "conversations.history":  # newest first, with metadata (include_all_metadata)
            messages = [m for m in self.history.get(args.get("channel"), [])
                        if float(m["ts"]) >= float(args.get("oldest") or 0)]
            return {"ok": True, "messages": messages, "has_more": False}
        if method in ("chat.postEphemeral", "chat.update"):
            return {"ok": True, "channel": args.get("channel"), "ts": f"{time.time():.6f}",
                    "message": {"text": args.get("text")}}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D0DMCHANNEL"}}
        if method in ("views.open", "views.update"):  # like Slack: a new hash per version; a stale hash refused
            view = args.get("view", {})
            view = json.loads(view) if isinstance(view, str) else view
            if method == "views.open":
                if not args.get("trigger_id"):
                    return {"ok": False, "error": "invalid_arguments"}
                view_id = f"V{uuid.uuid4().hex[:10].upper()}"
            else:
                view_id = args.get("view_id")
                if view_id not in self.views:
                    return {"ok": False, "error": "not_found"}
                if args.get("hash") and args["hash"] != self.views[view_id]["hash"]:
                    return {"ok": False, "error": "hash_conflict"}
            self.views[view_id] = {**view, "id": view_id, "hash": uuid.uuid4().hex}
            return {"ok": True, "view": self.views[view_id]}
        if method == "views.publish":
            view = args.get("view", {})
            return {"ok": True, "view": {"id": "V0HOME", **(json.loads(view) if isinstance(view, str) else view)}}
        return {"ok": True}

    def wait_for(self, predicate, timeout: float = DEADLINE):
        """Waits until predicate(calls, responses) returns something truthy, and returns it."""
        return wait_until(self._changed, lambda: predicate(self.calls, self.responses), timeout,
                          lambda: f"stand-in saw calls {[c[0] for c in self.calls]} and {len(self.responses)} "
                                  f"responses:{self.described_responses()}")

    def described_responses(self) -> str:
        """Every response received, one per line: its response_url id, how it was posted, its text."""
        return "".join(f"\n  {i}: {'replace' if r.get('replace_original') in (True, 'true') else 'add'} "
                       f"{r.get('response_type', '')} {str(r.get('text', ''))[:300]!r}" for i, r in self.responses)


def wait_until(changed: threading.Condition, predicate, timeout: float, describe):
    """Waits on ``changed`` until predicate() is truthy (returned) or ``timeout`` passes (TimeoutError saying
    what was seen)."""
    deadline = time.monotonic() + timeout
    with changed:
        while True:
            found = predicate()
            if found:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(describe())
            changed.wait(remaining)


def signed_headers(secret: str, body: str, timestamp: int | None = None, content_type: str =
                   "application/x-www-form-urlencoded") -> dict[str, str]:
    """Headers exactly as Slack signs a request: v0=HMAC-SHA256(secret, 'v0:{ts}:{body}')."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature,
            "Content-Type": content_type}


class SocketModeStandIn:
    """Slack's side of Socket Mode on a local websocket server (ws://127.0.0.1:PORT/link/?ticket=N).

    Each connection is greeted with `hello`; everything the app sends is recorded (`received`, with the
    index of the connection it came on; acks, the messages carrying an envelope_id, also in `acks`).
    Envelopes go to the newest open connection. Waits poll a condition against a deadline.
    """

    def __init__(self, app_id: str = APP_ID):
        from websockets.sync.server import serve

        self.app_id = app_id
        self.tickets: list[str] = []  # issued by apps.connections.open, in order
        self.paths: list[str] = []  # the request path of each connection, in order
        self.connections: list = []  # websockets ServerConnection objects, in order of arrival
        self.open: set[int] = set()  # indexes of connections still open
        self.received: list[tuple[int, dict]] = []  # (connection index, JSON message the app sent)
        self.acks: list[dict] = []  # every message the app sent with an envelope_id
        self.sent: list[tuple[int, dict]] = []  # (connection index, message the stand-in sent)
        self.closed_by_standin: set[int] = set()  # connections the stand-in closed (the rest: the app did)
        self._changed = threading.Condition()
        self.server = serve(self._serve_connection, "127.0.0.1", 0, close_timeout=2, compression=None)
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()

    def issue_url(self) -> str:
        with self._changed:
            ticket = str(len(self.tickets) + 1)
            self.tickets.append(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}"

    @property
    def connection_count(self) -> int:
        with self._changed:
            return len(self.connections)

    def current(self) -> int:
        """The index of the newest open connection."""
        with self._changed:
            if not self.open:
                raise RuntimeError("no open Socket Mode connection")
            return max(self.open)

    # -- the websocket side -----------------------------------------------------------

    def _serve_connection(self, connection) -> None:
        from websockets.exceptions import ConnectionClosed

        with self._changed:
            index = len(self.connections)
            self.connections.append(connection)
            self.paths.append(connection.request.path)
            self.open.add(index)
            self._changed.notify_all()
        try:
            self._send(index, {"type": "hello", "num_connections": 1,
                               "connection_info": {"app_id": self.app_id}, "debug_info": {}})
            for raw in connection:
                message = json.loads(raw)
                with self._changed:
                    self.received.append((index, message))
                    if "envelope_id" in message:
                        self.acks.append(message)
                    self._changed.notify_all()
        except ConnectionClosed:
            pass  # the builtin client drops the TCP connection without a close frame
        finally:
            with self._changed:
                self.open.discard(index)
                self._changed.notify_all()

    def _send(self, index: int, message: dict) -> None:
        with self._changed:
            connection = self.connections[index]
            self.sent.append((index, message))
        connection.send(json.dumps(message))

    def wait_for(self, predicate, timeout: float = DEADLINE):
        """Waits until predicate() returns something truthy, and returns it (the lock held while it runs)."""
        return wait_until(self._changed, predicate, timeout, lambda: (
            f"Socket Mode stand-in: {len(self.connections)} connections (open {sorted(self.open)}), "
            f"acks {[a.get('envelope_id') for a in self.acks]}"))

    def wait_for_connections(self, count: int, timeout: float = DEADLINE) -> int:
        """Waits until `count` connections have been made and the newest is open; returns its index."""
        return self.wait_for(lambda: len(self.connections) >= count and count - 1 in self.open and count, timeout) - 1

    # -- envelopes ----------------------------------------------------------------------

    def send_envelope(self, type_: str, payload: dict, envelope_id: str | None = None,
                      accepts_response_payload: bool | None = None, connection: int | None = None) -> str:
        """Sends {envelope_id, type, payload, accepts_response_payload} to a connection (the newest open one)."""
        envelope_id = envelope_id or str(uuid.uuid4())
        if accepts_response_payload is None:
            accepts_response_payload = type_ != "events_api"
        envelope = {"envelope_id": envelope_id, "type": type_, "payload": payload,
                    "accepts_response_payload": accepts_response_payload}
        if type_ == "events_api":
            envelope |= {"retry_attempt": 0, "retry_reason": ""}
        self._send(self.current() if connection is None else connection, envelope)
        return envelope_id

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict:
        """The app's ack for envelope_id (Slack wants it within 3 seconds)."""
        return self.wait_for(lambda: next((a for a in self.acks if a["envelope_id"] == envelope_id), None), timeout)

    def deliver(self, type_: str, payload: dict, timeout: float = 5.0, **options) -> tuple[str, dict]:
        """Sends an envelope and waits for its ack; returns (envelope_id, ack)."""
        envelope_id = self.send_envelope(type_, payload, **options)
        return envelope_id, self.wait_for_ack(envelope_id, timeout)

    def slash_command(self, command: str, text: str, user_id: str, response_url: str, **fields) -> dict:
        """A slash command's payload, as Socket Mode delivers it: the form fields as a JSON object."""
        return {"token": "legacy", "team_id": "T0EXAMPLE", "team_domain": "example", "channel_id": "C0CHAN001",
                "channel_name": "finops", "user_id": user_id, "user_name": "someone", "command": command,
                "text": text, "api_app_id": self.app_id, "is_enterprise_install": "false",
                "response_url": response_url, "trigger_id": "13345224609.738474920.8088930838d88f008e0", **fields}

    def block_action(self, action_id: str, value: str, user_id: str, response_url: str,
                     action_ts: str | None = None, container: dict | None = None) -> dict:
        """An interactive block_actions payload: the same object HTTP mode posts as `payload=`."""
        return {"type": "block_actions", "user": {"id": user_id, "username": "x", "team_id": "T0EXAMPLE"},
                "api_app_id": self.app_id, "team": {"id": "T0EXAMPLE", "domain": "example"},
                "container": container or {"type": "message", "is_ephemeral": True, "channel_id": "C0CHAN001"},
                "trigger_id": "1.2.3", "response_url": response_url,
                "actions": [{"type": "button", "action_id": action_id, "block_id": f"repo:{value}"[:255],
                             "value": value, "action_ts": action_ts or f"{time.time():.6f}"}]}

    def event_callback(self, event: dict, event_id: str | None = None) -> dict:
        """An events_api payload: the event_callback body."""
        return {"token": "legacy", "team_id": "T0EXAMPLE", "api_app_id": self.app_id, "type": "event_callback",
                "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}", "event_time": int(time.time()),
                "event": event, "authorizations": [{"team_id": "T0EXAMPLE", "user_id": BOT_USER, "is_bot": True}]}

    # -- connection lifecycle -------------------------------------------------------------

    def refresh(self, reason: str = "refresh_requested", timeout: float = DEADLINE, grace: float = 2.0) -> int:
        """Slack's periodic refresh: `disconnect` on the newest connection; the app must open a new one (a new
        apps.connections.open). Once it has, the old connection is given `grace` seconds for the app to close
        it, then closed from Slack's side (recorded in `closed_by_standin`). Returns the new connection's index."""
        old = self.current()
        with self._changed:
            count = len(self.connections)
        self._send(old, {"type": "disconnect", "reason": reason, "debug_info": {"host": "standin"}})
        new = self.wait_for_connections(count + 1, timeout)
        try:
            self.wait_for(lambda: old not in self.open, grace)
        except TimeoutError:
            self.close(old)
        return new

    def close(self, index: int) -> None:
        """Closes one connection from Slack's side (a close frame; no-op when already closed)."""
        with self._changed:
            connection = self.connections[index]
        self.closed_by_standin.add(index)
        connection.close()
