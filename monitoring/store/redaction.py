"""Secrets out of messages: the password of a URI (`postgresql://user:***@host/db`, an
MLflow tracking URI, an object-store URI) and of a libpq connection string (`password=***`,
a PostgreSQL catalog). Messages and logs name the store, never its credentials."""
from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@host  ->  scheme://user:***@host
_URI_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^@\s/]*@")
# password=secret, password = 'se cret', ?password=secret&...
_KEY_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?:'(?:\\.|[^'\\])*'|[^\s'\"&;]+)", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every password of a URI or connection string in it replaced by ***."""
    text = _URI_PASSWORD.sub(lambda m: m["head"] + MASK + "@", text)
    return _KEY_PASSWORD.sub(lambda m: m["head"] + MASK, text)
