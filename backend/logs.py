"""What a log line holds: JSON with DEBUG off, one access line per request, no secrets.

- `JsonFormatter` (settings.LOGGING with DEBUG off) writes every record as one JSON
  object: time, level, logger, message, the traceback if any, and inside a request
  that request's id, method, path and client address. Phone numbers (E.164) keep
  their last two digits, access tokens and refresh tokens are replaced, whatever
  logged them: a traceback may quote a database error with a phone in it. The
  simulated and console SMS backends log the code itself on purpose (an operator
  chose them); nothing else logs a code.
- `RequestLog` is made by backend/edge.py for each request and reached through a
  context variable. The GraphQL layer fills in the operation's name and its outcome
  codes (schema/observe.py, schema/errors.py); Django runs views in a task of its own,
  which copies the context, so they change this one object rather than set a variable.
- `access` writes the request's access line when it has been answered.
- `python -m backend.logs <command> [arguments]` runs a manage.py command with what it
  prints turned into log records (`make serve` runs migrate so), so a production log
  holds JSON lines only, from the first line of a deploy.
"""

import contextvars
import io
import json
import logging
import os
import re
import secrets
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

access_logger = logging.getLogger("access")

# A proxy's request id is kept when it is printable ASCII of reasonable length.
REQUEST_ID = re.compile(r"[!-~]{1,128}", re.ASCII)

_PHONE = re.compile(r"\+(\d{5,13})(\d{2})(?!\d)", re.ASCII)
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*", re.ASCII)
_REFRESH_TOKEN = re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{64}(?![0-9a-fA-F])", re.ASCII)


def redact(text: str) -> str:
    """`text` with phones masked to their last two digits and tokens replaced."""
    text = _JWT.sub("[token]", text)
    text = _REFRESH_TOKEN.sub("[token]", text)
    return _PHONE.sub(lambda match: "+" + "*" * len(match[1]) + match[2], text)


def new_request_id() -> str:
    return secrets.token_hex(16)


@dataclass
class RequestLog:
    """One request as the logs tell it; see the module docstring."""

    request_id: str
    method: str
    path: str
    client: str | None
    graphql: bool = False
    operation: str | None = None
    outcomes: list[str] = field(default_factory=list)
    status: int | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "client": self.client,
        }


_current: contextvars.ContextVar[RequestLog | None] = contextvars.ContextVar(
    "request_log", default=None
)


def begin(request: RequestLog) -> contextvars.Token[RequestLog | None]:
    return _current.set(request)


def end(token: contextvars.Token[RequestLog | None]) -> None:
    _current.reset(token)


def current() -> RequestLog | None:
    """The request being served by this task or thread, if any."""
    return _current.get()


def add_outcome(code: str) -> None:
    """Note a userErrors or top-level error code for the request's access line."""
    request = _current.get()
    if request is not None:
        request.outcomes.append(code)


def access(request: RequestLog, seconds: float, operation: str | None) -> None:
    """The request's access line; `operation` is its GraphQL operation name as logged."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    duration_ms = round(seconds * 1000, 1)
    access_logger.info(
        "%s %s %s %s ms",
        request.method,
        request.path,
        request.status,
        duration_ms,
        extra={
            "access": {
                "status": request.status,
                "operation": operation,
                "duration_ms": duration_ms,
                "outcomes": request.outcomes,
            }
        },
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per record; see the module docstring."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request = _current.get()
        if request is not None:
            entry.update(request.fields())
        access_fields = getattr(record, "access", None)
        if isinstance(access_fields, dict):
            entry.update(access_fields)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str)


class _LineLog(io.TextIOBase):
    """A text stream whose every line becomes one record of `logger`."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self.logger, self.level, self.pending = logger, level, ""

    def write(self, text: str) -> int:
        # migrate writes "Applying x..." and then " OK\n": one line, one record.
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if line.strip():
                self.logger.log(self.level, "%s", line.strip())
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            self.logger.log(self.level, "%s", self.pending.strip())
        self.pending = ""


def run_command(argv: list[str]) -> int:
    """Run `manage.py <argv>` with its output as log records of the logger manage.<name>.

    The system checks run as `manage.py` runs them (call_command would skip them), and
    a refusal, theirs included, is one ERROR record: the exit status is then 1.
    """
    import django
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import (
        CommandError,
        call_command,
        get_commands,
        load_command_class,
    )

    name, *arguments = argv
    logger = logging.getLogger(f"manage.{name}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    try:
        django.setup()
    except ImproperlyConfigured as error:  # settings.py refused: LOGGING is not set up
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.error("%s", error)
        return 1
    stdout, stderr = _LineLog(logger, logging.INFO), _LineLog(logger, logging.WARNING)
    try:
        if name not in get_commands():
            raise CommandError(f"Unknown command: {name!r}")
        command = load_command_class(get_commands()[name], name)
        checks = {"skip_checks": False} if command.requires_system_checks else {}
        call_command(command, *arguments, **checks, stdout=stdout, stderr=stderr)
    except CommandError as error:
        logger.error("%s", str(error).strip())
        return 1
    finally:
        stdout.flush()
        stderr.flush()
    return 0


if __name__ == "__main__":
    from backend.logs import run_command as run  # this module under its own name

    sys.exit(run(sys.argv[1:]))
