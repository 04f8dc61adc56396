"""Authentication used by the tests: token ``valid-<name>`` is user ``<name>``."""

from docsync.hops import nonblocking


@nonblocking
def token_authenticate(request):
    token = request.get("token") or ""
    if token.startswith("valid-"):
        return {"userId": token[len("valid-") :], "context": {"token": token}}
    if token == "explode":
        raise RuntimeError("boom")
    return None


def allow_all_but_deletes(event):
    """Everything but ``delete-doc`` (the fuzzer may not delete what others read)."""
    return event.type != "delete-doc"
