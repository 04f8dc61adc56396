"""Authentication used by the tests: token ``valid-<name>`` is user ``<name>``."""


def token_authenticate(request):
    token = request.get("token") or ""
    if token.startswith("valid-"):
        return {"userId": token[len("valid-") :], "context": {"token": token}}
    if token == "explode":
        raise RuntimeError("boom")
    return None
