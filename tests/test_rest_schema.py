"""The REST API tested against its own served OpenAPI schema with schemathesis.

A real server process (daphne) on PostgreSQL serves the API and its schema;
schemathesis loads the schema from it and sends generated requests to every
operation with a DRF token, checking that no answer is a server error and
that every answer (status code, content type, headers, body) is one the
schema documents.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi import checks

from tests.e2e_db import server_env
from tests.liveserver import LiveServer, manage

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SETUP = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from docsync import api
user = get_user_model().objects.create_user("schemathesis")
api.create_document("d1", "doc", user=user, operations=["a"])
print(json.dumps({"token": Token.objects.create(user=user).key}))
"""


@pytest.fixture(scope="module")
def live(pg_url):
    env = {
        **server_env(pg_url, "docsync.providers.orm.ORMProvider"),
        "E2E_AUTHENTICATE": "docsync.auth.authenticate",
        "E2E_AUTHORIZE": "docsync.permissions.authorize",
    }
    token = json.loads(manage("shell", "-c", SETUP, env=env).strip().splitlines()[-1])["token"]
    server = LiveServer(env=env).start()
    server.token = token
    yield server
    server.stop()


CHECKS = [
    schemathesis.checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


def operations(live):
    schema = schemathesis.openapi.from_url(f"{live.url}/api/docsync/schema/?format=json")
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_answers_as_its_schema_says(live):
    tested = []
    for operation in operations(live):

        @given(case=operation.as_strategy(), known=st.booleans())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def answers(case, known):
            # Half the requests name the user's own document (random ids are 404s).
            if known and "doc_id" in (case.path_parameters or {}) and case.method != "DELETE":
                case.path_parameters["doc_id"] = "d1"
            case.call_and_validate(headers={"Authorization": f"Token {live.token}"}, checks=CHECKS)

        answers()
        tested.append(operation.label)
    assert len(tested) == 13, tested  # every operation of the schema
