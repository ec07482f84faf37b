"""Errors answered to clients, with TensorFlow Serving's status codes.

A :class:`ServingError` carries a canonical status code name (``"INVALID_ARGUMENT"``,
``"NOT_FOUND"``, ...), which the gRPC service returns as is and the REST API turns into an
HTTP status with TensorFlow Serving's own table (``ToHTTPStatusCode`` in its http server).
"""

from __future__ import annotations

import re

# TensorFlow Serving's mapping from canonical codes to HTTP statuses.
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

# What TensorFlow Serving answers when its batch queue is full (shared_batch_scheduler.h).
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


class ServingError(Exception):
    """An error for the client: a canonical status code name and a one-line message."""

    def __init__(self, code: str, message: str):
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown status code {code!r}")
        # One line whatever a client put in it (a signature name, a path): control characters and
        # line separators are written as escapes.
        message = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), message)
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def __repr__(self) -> str:
        return f"ServingError({self.code}, {self.message!r})"


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def one_line(exc: BaseException) -> str:
    """A short error message without tracebacks or TensorFlow's node/stack decorations."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    lines = []
    for line in str(text).splitlines():
        s = line.strip()
        if not s or s.startswith(("Graph execution error", "Detected at node", "<stack traces", "[[", "File \"")):
            continue
        lines.append(re.sub(r"\s*\[Op:[^\]]*\]$", "", s))
    msg = "; ".join(lines) or type(exc).__name__
    return msg if len(msg) <= 500 else msg[:497] + "..."


def from_model_error(exc: BaseException) -> ServingError | None:
    """A TensorFlow error raised by a signature call, as the client's error (None: a server fault)."""
    import tensorflow as tf

    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError)):  # e.g. an id outside the vocabulary
        return invalid(one_line(exc))
    return None
