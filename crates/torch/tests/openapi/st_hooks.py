"""schemathesis hooks for the OpenAPI end-to-end test (e2e/openapi.rs).

The hub long-polls where the API says so: `GET /api/v1/events?wait_ms=`
(up to 30 s), `POST /api/v1/locks` with `wait_ms`, `POST /api/v1/waits`
with `timeout_ms` and `POST /api/v1/help` with `wait` (up to a day). Those
waits are correct answers, but they would outlast the run's request timeout,
so the generated waits are shortened to at most a second. Values of the
wrong type (negative testing) are left as they are.
"""

import schemathesis

MAX_WAIT_MS = 1000

# (method, path) -> the field holding a wait in ms.
QUERY_WAITS = {("GET", "/api/v1/events"): "wait_ms"}
BODY_WAITS = {
    ("POST", "/api/v1/locks"): "wait_ms",
    ("POST", "/api/v1/waits"): "timeout_ms",
    ("POST", "/api/v1/help"): "timeout_ms",
}


def _key(ctx):
    op = ctx.operation
    return (op.method.upper(), op.path)


def _shorten(values, field, default_if_waiting=False):
    if not isinstance(values, dict):
        return values
    v = values.get(field)
    if isinstance(v, int) and not isinstance(v, bool) and v > MAX_WAIT_MS:
        values[field] = MAX_WAIT_MS
    elif v is None and default_if_waiting and values.get("wait") is True:
        values[field] = MAX_WAIT_MS
    return values


@schemathesis.hook
def map_query(ctx, query):
    field = QUERY_WAITS.get(_key(ctx))
    return _shorten(query, field) if field else query


@schemathesis.hook
def map_body(ctx, body):
    key = _key(ctx)
    field = BODY_WAITS.get(key)
    if not field:
        return body
    return _shorten(body, field, default_if_waiting=key[1] == "/api/v1/help")
