"""An HTTP proxy in front of moto's server that behaves like AWS where moto does not.

- Pages DescribeImages / DescribeRepositories by maxResults and nextToken (100 by default), as
  ECR does; moto returns everything in one page (ECR_FACTS.md §5).
- Counts every request by operation, so tests can prove which calls a scan made.
- Injects failures: AccessDenied for chosen regions, ThrottlingException for the first N requests.
- Stands in for ECR's repository creation templates, which moto lacks (``CreationTemplates``, its own section
  below): Describe/Create/Update/DeleteRepositoryCreationTemplate, per region, paged like ECR.
- Serves layer and config blobs (``blobs``), which moto cannot: GetDownloadUrlForLayer answers with a URL on
  this proxy, and a GET of that URL streams the blob, as a presigned S3 URL would.
"""
from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
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
        self.unavailable_next: Counter[str] = Counter()  # operation -> how many of its next requests get a 503
        self.canned: dict[str, dict] = {}  # operation -> the JSON answer (for what moto does not implement)
        # operation -> f(request params) -> the JSON answer, and f(request params, moto's answer) -> the answer sent
        # (JSON protocols only: what moto lacks, or leaves out of its answer)
        self.answer: dict[str, Callable[[dict], dict]] = {}
        self.amend: dict[str, Callable[[dict, dict], dict]] = {}
        self.hold: dict[str, threading.Event] = {}  # operation -> answered once the event is set (at most 60 s)
        self.blobs: dict[str, bytes] = {}  # digest -> bytes served through GetDownloadUrlForLayer
        # Inspector2 ListCoverage (moto lacks it): None is Inspector not enabled (AccessDenied), else its resources
        self.coverage: list[dict] | None = None
        # operation -> largest page served: AWS may return fewer items than asked for, with a nextToken
        self.max_page: dict[str, int] = {}
        # IAM's policy simulator, which moto lacks: None leaves SimulatePrincipalPolicy to moto (which refuses it);
        # a dict answers it here, every action allowed but those listed for the PolicySourceArn (see the end)
        self.simulated_denials: dict[str, set[str]] | None = None
        self.templates = CreationTemplates()
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

    def start(self) -> AwsProxy:
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
            self.unavailable_next = Counter()
            self.canned = {}
            self.answer = {}
            self.amend = {}
            self.blobs = {}
            self.simulated_denials = None
            self.templates = CreationTemplates()
            for gate in self.hold.values():
                gate.set()
            self.hold = {}
            self.coverage = None

    # -- request handling --------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        if request.path.startswith(BLOB_PATH):
            return self._serve_blob(request)
        operation = ("ListCoverage" if request.path == "/coverage/list"
                     else _operation(request.headers, body, request.command, request.path))
        region = (_REGION.search(request.headers.get("Authorization", "")) or [None, None])[1]
        with self._lock:
            self.calls[operation] += 1
            throttle = self.throttle_next > 0 and operation != "GetCallerIdentity"
            if throttle:
                self.throttle_next -= 1
        json_protocol = "X-Amz-Target" in request.headers
        if operation in self.hold:
            self.hold[operation].wait(timeout=60)
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
        with self._lock:
            unavailable = self.unavailable_next[operation] > 0
            if unavailable:
                self.unavailable_next[operation] -= 1
        if unavailable:  # AWS failing once: the service's own 503
            return _reply_error(request, json_protocol, "ServiceUnavailableException", "Service Unavailable", 503)
        if operation == "SimulatePrincipalPolicy" and self.simulated_denials is not None:
            return _reply_simulation(request, body, self.simulated_denials)
        if operation in self.canned:
            return _reply_json(request, self.canned[operation])
        if operation in self.answer:
            return _reply_json(request, self.answer[operation](json.loads(body or b"{}")))
        if operation in TEMPLATE_OPERATIONS:
            status, answer = self.templates.handle(operation, region, json.loads(body or b"{}"))
            return _reply_json(request, answer) if status == 200 else _reply_error(request, True, *answer)
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
            page = (min(params.pop("MaxResults", 1000), self.max_page[operation]),
                    int(params.pop("NextToken", None) or 0))
            body = json.dumps(params).encode()
        status, headers, payload = self._forward(request, body)
        if page is not None and status == 200 and operation == "GetQueryResults":
            payload = _page_rows(payload, *page)
        elif page is not None and status == 200:
            payload = _page(payload, PAGED[operation], *page)
        if operation in self.amend and status == 200:
            payload = json.dumps(self.amend[operation](json.loads(body or b"{}"), json.loads(payload))).encode()
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


_LAMBDA_READS = [(re.compile(r"^/2015-03-31/functions/?$"), "ListFunctions"),
                 (re.compile(r"^/2015-03-31/functions/[^/]+/versions$"), "ListVersionsByFunction"),
                 (re.compile(r"^/2015-03-31/functions/[^/]+/aliases$"), "ListAliases"),
                 (re.compile(r"^/2015-03-31/functions/[^/]+$"), "GetFunction")]


def _operation(headers, body: bytes, method: str = "POST", path: str = "") -> str:
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    action = parse_qs(body.decode(errors="replace")).get("Action")
    if action:
        return action[0]
    if method == "GET":  # Lambda's REST reads, the ones the in-use check makes
        route = urlsplit(path).path
        return next((name for pattern, name in _LAMBDA_READS if pattern.match(route)), "unknown")
    return "unknown"


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


def _reply_error(request: BaseHTTPRequestHandler, json_protocol: bool, code: str, message: str,
                 status: int = 400) -> None:
    if json_protocol:  # ECR
        payload = json.dumps({"__type": code, "message": message}).encode()
        content_type = "application/x-amz-json-1.1"
    else:  # STS speaks the query protocol: XML errors
        payload = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
                   f"</Error><RequestId>proxy</RequestId></ErrorResponse>").encode()
        content_type = "text/xml"
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("x-amzn-ErrorType", code)
    request.send_header("Content-Length", str(len(payload)))
    request.end_headers()
    request.wfile.write(payload)


# -- IAM's policy simulator (moto has no SimulatePrincipalPolicy) ----------------------------------------------


def _reply_simulation(request: BaseHTTPRequestHandler, body: bytes, denials: dict[str, set[str]]) -> None:
    """SimulatePrincipalPolicy as IAM answers it (query protocol, XML): one EvaluationResult per action asked,
    "allowed" unless ``denials`` lists it for the PolicySourceArn ("implicitDeny")."""
    from xml.sax.saxutils import escape

    params = parse_qs(body.decode(errors="replace"))
    principal = params.get("PolicySourceArn", [""])[0]
    actions = [params[k][0] for k in sorted((k for k in params if k.startswith("ActionNames.member.")),
                                            key=lambda k: int(k.rsplit(".", 1)[1]))]
    denied = denials.get(principal, set())
    members = "".join(
        f"<member><EvalActionName>{escape(a)}</EvalActionName><EvalResourceName>*</EvalResourceName>"
        f"<EvalDecision>{'implicitDeny' if a in denied else 'allowed'}</EvalDecision>"
        f"<MatchedStatements/><MissingContextValues/></member>" for a in actions)
    payload = (f'<SimulatePrincipalPolicyResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
               f"<SimulatePrincipalPolicyResult><IsTruncated>false</IsTruncated>"
               f"<EvaluationResults>{members}</EvaluationResults></SimulatePrincipalPolicyResult>"
               f"<ResponseMetadata><RequestId>proxy</RequestId></ResponseMetadata>"
               f"</SimulatePrincipalPolicyResponse>").encode()
    request.send_response(200)
    request.send_header("Content-Type", "text/xml")
    request.send_header("Content-Length", str(len(payload)))
    request.end_headers()
    request.wfile.write(payload)


# -- repository creation templates (moto has none) --------------------------------------------------------------------

TEMPLATE_OPERATIONS = ("DescribeRepositoryCreationTemplates", "CreateRepositoryCreationTemplate",
                       "UpdateRepositoryCreationTemplate", "DeleteRepositoryCreationTemplate")
TEMPLATE_FIELDS = ("description", "encryptionConfiguration", "resourceTags", "imageTagMutability",
                   "imageTagMutabilityExclusionFilters", "repositoryPolicy", "lifecyclePolicy", "appliedFor",
                   "customRoleArn")


class CreationTemplates:
    """ECR's repository creation templates as the API answers: per region, keyed by prefix (``ROOT`` for the default),
    with AWS's errors for a template that exists already or not at all, and its validation of ``appliedFor``."""

    ACCOUNT = "123456789012"

    def __init__(self):
        self.by_region: dict[str, dict[str, dict]] = {}
        self.lock = threading.Lock()

    def handle(self, operation: str, region: str | None, params: dict) -> tuple[int, object]:
        with self.lock:
            templates = self.by_region.setdefault(region or "us-east-1", {})
            prefix = params.get("prefix")
            if operation == "DescribeRepositoryCreationTemplates":
                wanted = params.get("prefixes") or sorted(templates)
                found = [templates[p] for p in wanted if p in templates]
                size, offset = params.get("maxResults", 50), int(params.get("nextToken") or 0)
                page = {"registryId": self.ACCOUNT, "repositoryCreationTemplates": found[offset:offset + size]}
                if offset + size < len(found):
                    page["nextToken"] = str(offset + size)
                return 200, page
            if operation == "DeleteRepositoryCreationTemplate":
                if prefix not in templates:
                    return 400, ("TemplateNotFoundException", f"The template with the prefix {prefix} does not exist")
                return 200, {"registryId": self.ACCOUNT, "repositoryCreationTemplate": templates.pop(prefix)}
            applied = params.get("appliedFor")
            if applied is not None and (not applied or not set(applied) <= {"REPLICATION", "PULL_THROUGH_CACHE",
                                                                            "CREATE_ON_PUSH"}):
                return 400, ("InvalidParameterException", f"Invalid parameter at 'appliedFor': {applied}")
            if operation == "CreateRepositoryCreationTemplate":
                if prefix in templates:
                    return 400, ("TemplateAlreadyExistsException", f"The template with the prefix {prefix} already "
                                                                   f"exists")
                if applied is None:
                    return 400, ("InvalidParameterException", "appliedFor is required")
                now = time.time()
                templates[prefix] = {"prefix": prefix, "createdAt": now, "updatedAt": now,
                                     **{k: params[k] for k in TEMPLATE_FIELDS if k in params}}
            else:  # UpdateRepositoryCreationTemplate: the fields given replace those of the template
                if prefix not in templates:
                    return 400, ("TemplateNotFoundException", f"The template with the prefix {prefix} does not exist")
                templates[prefix].update({k: params[k] for k in TEMPLATE_FIELDS if k in params}, updatedAt=time.time())
            return 200, {"registryId": self.ACCOUNT, "repositoryCreationTemplate": templates[prefix]}
