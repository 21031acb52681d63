"""Read the recorded Hyperliquid responses (VCR YAML) in tests/fixtures/hyperliquid/."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hyperliquid"


def recorded(cassette: str, request_type: str) -> tuple[dict[str, Any], Any]:
    """(request body, response body) of the interaction whose request has `type`."""
    document = yaml.safe_load((FIXTURES / f"{cassette}.yaml").read_text())
    for interaction in document["interactions"]:
        request = json.loads(interaction["request"]["body"])
        if request["type"] == request_type:
            # As an exchange client would, but without any float: exact numbers stay exact.
            body = interaction["response"]["body"]["string"]
            return request, json.loads(body, parse_float=Decimal)
    raise LookupError(f"{cassette}.yaml has no {request_type} request")
