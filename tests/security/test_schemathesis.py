"""schemathesis against the collector's published description (``docs/collector-openapi.yaml``) and
the real web process: every documented route, answers as documented, never a 5xx.
``PINSIGNAL_SCHEMATHESIS_EXAMPLES`` raises the number of examples per route.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from security_support import ROOT, WebProcess

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("PINSIGNAL_SCHEMATHESIS_EXAMPLES") or 15)
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36"}

schema = schemathesis.openapi.from_path(ROOT / "docs" / "collector-openapi.yaml")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_collector_answers_as_described(case: schemathesis.Case, web: WebProcess) -> None:
    case.call_and_validate(base_url=web.url, headers=BROWSER)
