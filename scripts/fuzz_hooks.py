"""Schemathesis hooks for scripts/fuzz: furrow's own checks, and real ids in paths.

Loaded through SCHEMATHESIS_HOOKS. The ids of the seeded grower (a Leaf user with synced
fields and operations) come from the environment; in about half of the valid cases the
generated path ids are replaced by them, so answers about real resources are checked against
their schemas too, not only 404s. Invalid cases are left as generated.
"""

import hashlib
import os

import schemathesis

REAL = {
    "user": os.environ.get("FUZZ_USER", ""),
    "field": os.environ.get("FUZZ_FIELD", ""),
    "operation": os.environ.get("FUZZ_OPERATION", ""),
    "file": os.environ.get("FUZZ_FILE", ""),
}


def _heads(value) -> bool:
    """A stable coin toss: the same generated value always gets the same answer."""
    return hashlib.sha256(repr(value).encode()).digest()[0] < 128


def _positive(case) -> bool:
    """Whether schemathesis meant this case to be valid: an invalid one must stay invalid (a
    real id put into it could make it valid, and its acceptance look like a bug)."""
    meta = case.meta
    if meta is None:
        return True
    mode = meta.generation.mode
    return getattr(mode, "value", mode) == "positive"


@schemathesis.hook
def map_case(context, case):
    operation = case.operation
    params = case.path_parameters
    # Deleting the seeded grower's data would leave nothing real for the rest of the run.
    if operation.method.upper() == "DELETE" or not params or not _positive(case):
        return case
    if not _heads(params):
        return case
    path = operation.path
    mapped = dict(params)
    if "/users/{id}" in path and REAL["user"]:
        mapped["id"] = REAL["user"]
    if "/users/{user}/" in path and REAL["user"]:
        mapped["user"] = REAL["user"]
    if "{field}" in path and REAL["field"]:
        mapped["field"] = REAL["field"]
    if path.startswith("/services/operations/api/operations/{id}") and REAL["operation"]:
        mapped["id"] = REAL["operation"]
    if path.startswith("/services/operations/api/files/{id}") and REAL["file"]:
        mapped["id"] = REAL["file"]
    case.path_parameters = mapped
    return case


@schemathesis.check
def problem_details_on_errors(ctx, response, case):
    """Every 4xx and 5xx of the API is RFC 9457 problem details (the grower's pages under
    /connect answer theirs as pages)."""
    if response.status_code < 400 or case.operation.path.startswith("/connect/"):
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("application/problem+json"):
        raise AssertionError(
            f"{response.status_code} answered as {content_type!r}, not application/problem+json"
        )
    body = response.json()
    for key in ("type", "title", "status", "detail"):
        if key not in body:
            raise AssertionError(f"problem details without {key!r}: {body}")
    if body["status"] != response.status_code:
        raise AssertionError(f"problem status {body['status']} on a {response.status_code}")
    return None
