"""Standard-library logging for jobs (no log4j through the JVM, which breaks on Spark Connect),
and the secret redaction every mlcore output goes through.

Redaction is by *value*: the values of secret-looking environment variables (tokens, passwords,
storage keys), secrets found in the job's config (keys such as ``...secret.key``,
``...account.key``, ``...token``; passwords in URIs) and anything passed to
:func:`register_secret` are replaced by ``<redacted>`` in log records, MLflow params, tags and
text artifacts (``mlcore.tracking``) and config error messages. Key-based filtering alone is not
enough: a secret value also shows up in tracebacks, resolved-config dumps and echoed arguments.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "<redacted>"
_MIN_SECRET_LENGTH = 6  # shorter values ("true", "1") would redact ordinary words
# Environment variables whose values are credentials (AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_TOKEN,
# DATABRICKS_TOKEN, AZURE_STORAGE_KEY / _ACCOUNT_KEY / _CONNECTION_STRING, *_PASSWORD, ...).
_SECRET_ENV = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|ACCOUNT_KEY|STORAGE_KEY|API_KEY|"
    r"PRIVATE_KEY|SAS|CONNECTION_STRING|(^|_)KEY$",
    re.IGNORECASE,
)
# Config keys (dotted, Spark/Hadoop style or snake_case) whose values are credentials. Kept
# narrow on purpose: ``group_keys``, ``key_columns`` or ``batch_keys`` are not secrets.
_SECRET_KEY = re.compile(
    r"password|passwd|secret|token|credential|private[._-]?key|api[._-]?key|access[._-]?key|"
    r"account[._-]?key|storage[._-]?key|keyfile|connection[._-]?string|(^|[._-])sas([._-]|$)|"
    r"(^|[._-])key$",
    re.IGNORECASE,
)
# User info in URIs: ``user:password@``, a bare token ``TOKEN@``, ``user@``, percent-encoded
# or not. The whole user info is a credential (a token alone is one), so all of it is redacted.
_URI_USERINFO = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<secret>[^/?#@\s]+)(?=@)")
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&](?:sig|signature|token|access_token|key|password|secret|sas)=)(?P<secret>[^&\s\"']+)",
    re.IGNORECASE,
)
# Spark's own redaction of conf keys in its UI, event log and logs (default:
# ``(?i)secret|password|token|access[.]?key``), widened to the keys above.
SPARK_REDACTION_REGEX = (
    r"(?i)secret|password|passwd|token|credential|access[.]?key|account[.]?key|api[.]?key|"
    r"private[.]?key|keyfile|\.sas\."
)

_registered: set[str] = set()
_lock = threading.Lock()


def is_secret_key(key: str) -> bool:
    """True for config/env keys whose values are credentials."""
    return bool(_SECRET_KEY.search(key))


def register_secret(value: Any) -> None:
    """Redact ``value`` from now on, wherever mlcore writes text."""
    if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _registered.add(value)


def register_userinfo(userinfo: str) -> None:
    """Redact a URI's user info wherever it shows up: whole, each part, and percent-decoded."""
    from urllib.parse import unquote

    for text in (userinfo, unquote(userinfo)):
        register_secret(text)
        for part in text.split(":", 1):
            register_secret(part)


def register_config_secrets(flat: Mapping[str, Any]) -> None:
    """Register the values of secret-looking keys and URI user info of a flattened config."""
    for key, value in flat.items():
        if not isinstance(value, str):
            continue
        if is_secret_key(key):
            register_secret(value)
        for match in _URI_USERINFO.finditer(value):
            register_userinfo(match.group("secret"))


def environ_snapshot(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A consistent copy of the environment, safe while other threads change it.

    Iterating ``os.environ`` looks each name up again, so a variable that a thread (MLflow's
    telemetry, for one) pops in between raises ``KeyError``, and one it adds can raise
    ``RuntimeError``. ``os.environ``'s backing dict is copied in one C call instead (atomic under
    the GIL); other mappings are copied with a retry.
    """
    if environ is None or environ is os.environ:
        data = getattr(os.environ, "_data", None)
        decode = getattr(os.environ, "decodevalue", None)
        decode_key = getattr(os.environ, "decodekey", None)
        if isinstance(data, dict) and callable(decode) and callable(decode_key):
            return {decode_key(k): decode(v) for k, v in dict(data).items()}
        environ = os.environ
    for _ in range(100):
        try:
            return dict(environ)
        except (KeyError, RuntimeError):
            continue
    return {}


def _env_secrets(environ: Mapping[str, str]) -> set[str]:
    return {
        value
        for name, value in environ.items()
        if _SECRET_ENV.search(name) and len(value) >= _MIN_SECRET_LENGTH
    }


# Secrets in the environment when the job started (import, and ``setup_logging``): redacted
# even if something unsets them later.
_startup_env_secrets: set[str] = _env_secrets(environ_snapshot())


def remember_environment_secrets() -> None:
    """Keep redacting the environment's current secrets even after they are unset (called at
    job start by :func:`setup_logging`)."""
    found = _env_secrets(environ_snapshot())
    with _lock:
        _startup_env_secrets.update(found)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every value that is redacted: secret-looking environment variables (now and at job
    start) and registered ones. Never raises, whatever other threads do to the environment."""
    found = _env_secrets(environ_snapshot(environ))
    with _lock:
        if environ is None:
            found |= _startup_env_secrets
        found |= _registered
    return sorted(found, key=len, reverse=True)  # longest first: no half-redacted overlaps


def redact(text: Any, extra: Iterable[str] = ()) -> str:
    """``text`` with every known secret value and URI/query credential replaced."""
    out = str(text)
    for value in [*extra, *secret_values()]:
        if value and value in out:
            out = out.replace(value, REDACTED)
    out = _URI_USERINFO.sub(lambda m: m.group("head") + REDACTED, out)
    return _QUERY_SECRET.sub(lambda m: m.group("head") + REDACTED, out)


class RedactingFormatter(logging.Formatter):
    """Formats as usual (tracebacks included), then redacts the whole line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is *now* (not the stream current at setup time)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: D102 - logging.StreamHandler API
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; the property always wins
        pass


def setup_logging(level: str = "INFO") -> None:
    remember_environment_secrets()
    root = logging.getLogger()
    if not any(getattr(h, "_mlcore", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(RedactingFormatter(_FORMAT, "%H:%M:%S"))
        handler._mlcore = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Batch jobs write logs, not terminals: no MLflow download progress bars.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # mlflow.pyfunc: "Validating input example against model signature" on every registration.
    for noisy in ("py4j", "urllib3", "alembic", "mlflow.store.db.utils", "mlflow.pyfunc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Each HTTP retry against a tracking server that is down is one WARNING line; the job's own
    # one-line failure says what happened (DEBUG shows the retries).
    if root.level > logging.DEBUG:
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
