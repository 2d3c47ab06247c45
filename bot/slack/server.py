"""`ecr-cost-bot serve`: the Slack app (Socket Mode or HTTP behind waitress) and the weekly scheduler."""
from __future__ import annotations

import json
import logging
import signal
import threading

from ..config import Settings
from ..errors import ConfigError
from ..health import BEAT_SECONDS, alive_path, write_alive
from ..heartbeat import heartbeat

logger = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"
MAX_REQUEST_BODY = 1 * 2**20  # bytes: Slack sends a few KB; waitress answers 413 beyond this


def wsgi_app(bolt_app):
    """POST /slack/events to Bolt (which verifies Slack's signature), GET /healthz, 404 otherwise."""
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    slack = SlackRequestHandler(bolt_app, path=EVENTS_PATH)

    def application(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") == "GET":
            body = json.dumps({"ok": True}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return slack(environ, start_response)

    return application


def serve(settings: Settings) -> int:
    from ..scheduler import build_scheduler
    from ..wiring import build, build_report_job, build_slack, scheduled_jobs

    if not settings.slack_bot_token:
        raise ConfigError("SLACK_BOT_TOKEN: required for serve")
    if not settings.slack_app_token and not settings.slack_signing_secret:
        raise ConfigError("SLACK_SIGNING_SECRET: required for serve in HTTP mode "
                          "(or set SLACK_APP_TOKEN for Socket Mode)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "boto3", "urllib3", "slack_bolt", "slack_sdk", "apscheduler", "waitress"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # their start-up lines say nothing an operator needs

    from .app import check_slack, web_client

    client = web_client(settings)
    check_slack(settings, client)  # a bad token or an unreachable Slack: one line, exit 2
    built = build(settings)
    abandoned = built.store.abandon_dead_scans()  # scans a killed process left running
    if abandoned:
        logger.warning("marked %d scans that never finished as abandoned: %s", len(abandoned), abandoned)
    for problem in built.collector.check_access():  # raises EstateUnreadable when no account can be read
        logger.warning("%s %s: %s", problem.account_id, problem.region, problem.message)
    app, directory, client = build_slack(built, client)
    scheduler = build_scheduler(settings, scheduled_jobs(built, client, directory))
    catching_up = None
    if settings.report_channel:
        job = build_report_job(built, client, directory)
        # a run missed while the bot was down: posted once now, if this period has no report yet
        catching_up = threading.Thread(target=lambda: logger.info("start-up: %s", job.catch_up()), name="catch-up")
        catching_up.start()
    else:
        logger.warning("ECR_COST_REPORT_CHANNEL is not set: the weekly job only rescans, no report is posted")
    scheduler.start()
    stop = _on_sigterm(raise_exit=not settings.slack_app_token)
    runner = build_runner(settings, app)
    mode = "socket" if settings.slack_app_token else "http"

    def connected() -> bool:
        return runner.client.is_connected() if settings.slack_app_token else True

    try:
        write_alive(settings, mode, connected=not settings.slack_app_token)  # up to the first beat
        with heartbeat(lambda: write_alive(settings, mode, connected()), BEAT_SECONDS, "alive"):
            _run(settings, runner, stop)
    finally:
        alive_path(settings).unlink(missing_ok=True)  # stopped: `health` says so at once
        # a job in flight ends with the store still open; one that outlasts the container's grace period is
        # killed, as in a crash, which its claim survives (the next run takes it over)
        scheduler.shutdown(wait=True)
        if catching_up is not None:
            catching_up.join()
        built.close()
        logger.info("stopped")
    return 0


def _run(settings: Settings, runner, stop: threading.Event) -> None:
    from slack_sdk.errors import SlackApiError

    from ..errors import slack_failure

    if settings.slack_app_token:
        logger.info("serving in Socket Mode")
        noisy = [logging.getLogger(name) for name in ("slack_bolt", "slack_sdk")]
        levels = [logger_.level for logger_ in noisy]
        for logger_ in noisy:  # a refused app token is said once, below, not also as their ERROR lines
            logger_.setLevel(logging.CRITICAL)
        try:
            runner.connect()
        except SlackApiError as exc:  # apps.connections.open refused the app-level token
            raise ConfigError(slack_failure(exc, "SLACK_APP_TOKEN", settings.slack_api_url)) from None
        finally:
            for logger_, level in zip(noisy, levels, strict=True):
                logger_.setLevel(level)
        stop.wait()
        runner.close()
    else:
        logger.info("serving HTTP on port %s: POST %s, GET /healthz", settings.port, EVENTS_PATH)
        runner.run()  # SIGTERM raises SystemExit inside; waitress then stops its workers


def build_runner(settings: Settings, app):
    """Socket Mode when SLACK_APP_TOKEN is set, else waitress (a production WSGI server) on PORT."""
    if settings.slack_app_token:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        return SocketModeHandler(app, settings.slack_app_token)
    from waitress.server import create_server

    # waitress reads a body (1 GB by default) before Bolt checks the signature: Slack's payloads are far below 1 MB
    return create_server(wsgi_app(app), host="0.0.0.0", port=settings.port, threads=8,
                         max_request_body_size=MAX_REQUEST_BODY)


def _on_sigterm(raise_exit: bool):
    """SIGTERM (docker stop) ends `serve` cleanly: waitress stops on SystemExit, Socket Mode on the event."""
    stop = threading.Event()

    def handle(signum, frame):
        stop.set()
        if raise_exit:
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, handle)
    return stop
