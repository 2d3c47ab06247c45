"""An HTTP proxy in front of moto's server that behaves like AWS where moto does not.

- Pages DescribeImages / DescribeRepositories by maxResults and nextToken (100 by default), as
  ECR does; moto returns everything in one page (ECR_FACTS.md §5).
- Counts every request by operation, so tests can prove which calls a scan made.
- Injects failures: AccessDenied for chosen regions, ThrottlingException for the first N requests.
- Serves layer and config blobs (``blobs``), which moto cannot: GetDownloadUrlForLayer answers with a URL on
  this proxy, and a GET of that URL streams the blob, as a presigned S3 URL would.
"""
from __future__ import annotations

import http.client
import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BLOB_PATH = "/__blobs__/"
PAGED = {"DescribeImages": "imageDetails", "DescribeRepositories": "repositories"}
_REGION = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/")


class AwsProxy:
    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.calls: Counter[str] = Counter()
        self.deny_regions: set[str] = set()
        self.deny_roles: set[str] = set()  # role ARNs whose AssumeRole is refused (an account that cannot be entered)
        self.throttle_next = 0
        self.fail: dict[str, tuple[str, str]] = {}  # operation -> (error code, message)
        self.canned: dict[str, dict] = {}  # operation -> the JSON answer (for what moto does not implement)
        self.blobs: dict[str, bytes] = {}  # digest -> bytes served through GetDownloadUrlForLayer
        # Inspector2 ListCoverage (moto lacks it): None is Inspector not enabled (AccessDenied), else its resources
        self.coverage: list[dict] | None = None
        # operation -> largest page served: AWS may return fewer items than asked for, with a nextToken
        self.max_page: dict[str, int] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stalls

            def log_message(self, *args):
                pass

            def do_POST(self):
                proxy._handle(self)

            do_GET = do_PUT = do_DELETE = do_HEAD = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "AwsProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.deny_regions.clear()
            self.deny_roles.clear()
            self.throttle_next = 0
            self.max_page = {}
            self.fail = {}
            self.canned = {}
            self.blobs = {}
            self.coverage = None

    # -- request handling --------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        if request.path.startswith(BLOB_PATH):
            return self._serve_blob(request)
        operation = "ListCoverage" if request.path == "/coverage/list" else _operation(request.headers, body)
        region = (_REGION.search(request.headers.get("Authorization", "")) or [None, None])[1]
        with self._lock:
            self.calls[operation] += 1
            throttle = self.throttle_next > 0 and operation != "GetCallerIdentity"
            if throttle:
                self.throttle_next -= 1
        json_protocol = "X-Amz-Target" in request.headers
        if throttle:
            return _reply_error(request, json_protocol, "ThrottlingException", "Rate exceeded")
        if region in self.deny_regions and operation != "GetCallerIdentity":
            return _reply_error(request, json_protocol, "AccessDeniedException" if json_protocol else "AccessDenied",
                                f"User: arn:aws:iam::123456789012:user/bot is not authorized to perform: "
                                f"ecr:{operation} in region {region}")
        if operation == "AssumeRole" and parse_qs(body.decode(errors="replace")).get("RoleArn", [""])[0] in \
                self.deny_roles:
            return _reply_error(request, False, "AccessDenied", "User: arn:aws:iam::123456789012:user/bot is not "
                                                                "authorized to perform: sts:AssumeRole")
        if operation in self.fail:
            return _reply_error(request, json_protocol, *self.fail[operation])
        if operation in self.canned:
            return _reply_json(request, self.canned[operation])
        if operation == "ListCoverage":
            return self._list_coverage(request, json.loads(body or b"{}"))
        if operation == "GetDownloadUrlForLayer":
            digest = json.loads(body or b"{}").get("layerDigest", "")
            if digest not in self.blobs:
                return _reply_error(request, True, "LayersNotFoundException", f"layer {digest} not found")
            return _reply_json(request, {"downloadUrl": f"{self.url}{BLOB_PATH}{digest}", "layerDigest": digest})
        page = None
        if operation in PAGED and json_protocol:  # ECR's; EC2 has a DescribeImages of its own
            params = json.loads(body or b"{}")
            size = params.pop("maxResults", 100)
            page = (min(size, self.max_page.get(operation, size)), int(params.pop("nextToken", None) or 0))
            body = json.dumps(params).encode()
        if operation == "GetQueryResults" and operation in self.max_page:  # Athena pages rows; moto does not
            params = json.loads(body or b"{}")
            page = (min(params.pop("MaxResults", 1000), self.max_page[operation]), int(params.pop("NextToken", None) or 0))
            body = json.dumps(params).encode()
        status, headers, payload = self._forward(request, body)
        if page is not None and status == 200 and operation == "GetQueryResults":
            payload = _page_rows(payload, *page)
        elif page is not None and status == 200:
            payload = _page(payload, PAGED[operation], *page)
        request.send_response(status)
        head = request.command == "HEAD"  # S3's HeadObject: the object's length, no body
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server") or (
                    head and name.lower() == "content-length"):
                request.send_header(name, value)
        if not head:
            request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def _list_coverage(self, request: BaseHTTPRequestHandler, params: dict) -> None:
        """Inspector2 ListCoverage as AWS answers it: resourceType and ecrImageLastInUseAt filters, pages of
        maxResults (5 by default here, so paging is exercised) with a nextToken."""
        if self.coverage is None:
            return _reply_error(request, True, "AccessDeniedException", "Amazon Inspector is not enabled for this "
                                                                        "account")
        criteria = params.get("filterCriteria", {})
        kinds = {c["value"] for c in criteria.get("resourceType", [])}
        since = min((c.get("startInclusive", 0) for c in criteria.get("ecrImageLastInUseAt", [])), default=None)
        items = [r for r in self.coverage if (not kinds or r["resourceType"] in kinds) and (
            since is None or r.get("resourceMetadata", {}).get("ecrImage", {}).get("lastInUseAt", 0) >= since)]
        size, offset = params.get("maxResults", 5), int(params.get("nextToken") or 0)
        answer = {"coveredResources": items[offset:offset + size]}
        if offset + size < len(items):
            answer["nextToken"] = str(offset + size)
        return _reply_json(request, answer)

    def _serve_blob(self, request: BaseHTTPRequestHandler) -> None:
        digest = request.path[len(BLOB_PATH):]
        with self._lock:
            self.calls["GetBlob"] += 1
        data = self.blobs.get(digest)
        if data is None:
            request.send_response(404)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        request.send_response(200)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        for start in range(0, len(data), 65536):  # streamed, as S3 does
            request.wfile.write(data[start:start + 65536])

    def _forward(self, request: BaseHTTPRequestHandler, body: bytes):
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "host")}
        headers["Content-Length"] = str(len(body))
        headers["Host"] = f"{self.upstream[0]}:{self.upstream[1]}"
        try:
            connection.request(request.command, request.path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


def _operation(headers, body: bytes) -> str:
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    action = parse_qs(body.decode(errors="replace")).get("Action")
    return action[0] if action else "unknown"


def _page(payload: bytes, key: str, size: int, offset: int) -> bytes:
    doc = json.loads(payload)
    items = doc.get(key, [])
    doc[key] = items[offset:offset + size]
    doc.pop("nextToken", None)
    if offset + size < len(items):
        doc["nextToken"] = str(offset + size)
    return json.dumps(doc).encode()


def _page_rows(payload: bytes, size: int, offset: int) -> bytes:
    doc = json.loads(payload)
    rows = doc.get("ResultSet", {}).get("Rows", [])
    doc["ResultSet"]["Rows"] = rows[offset:offset + size]
    doc.pop("NextToken", None)
    if offset + size < len(rows):
        doc["NextToken"] = str(offset + size)
    return json.dumps(doc).encode()


def _reply_json(request: BaseHTTPRequestHandler, answer: dict) -> None:
    payload = json.dumps(answer).encode()
    request.send_response(200)
    request.send_header("Content-Type", "application/x-amz-json-1.1")
    request.send_header("Content-Length", str(len(payload)))
    request.end_headers()
    request.wfile.write(payload)


def _reply_error(request: BaseHTTPRequestHandler, json_protocol: bool, code: str, message: str) -> None:
    if json_protocol:  # ECR
        payload = json.dumps({"__type": code, "message": message}).encode()
        content_type = "application/x-amz-json-1.1"
    else:  # STS speaks the query protocol: XML errors
        payload = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
                   f"</Error><RequestId>proxy</RequestId></ErrorResponse>").encode()
        content_type = "text/xml"
    request.send_response(400)
    request.send_header("Content-Type", content_type)
    request.send_header("x-amzn-ErrorType", code)
    request.send_header("Content-Length", str(len(payload)))
    request.end_headers()
    request.wfile.write(payload)
