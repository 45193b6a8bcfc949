"""ContinuationToken: immutable, printable, parseable, comparable, JSON-serialisable, strict about damage."""

from __future__ import annotations

import dataclasses
import json

import pytest

from agent_nb import ContinuationToken, InvalidContinuationToken

RESPONSE_ID = "resp_" + "0123456789abcdef" * 3


def test_round_trips_through_its_string_dict_and_json() -> None:
    token = ContinuationToken(RESPONSE_ID, 317)
    text = str(token)
    assert text.startswith("anb1.") and len(text) < 100
    assert ContinuationToken.parse(text) == token
    assert ContinuationToken.parse(token.to_dict()) == token
    assert ContinuationToken.parse(json.loads(json.dumps(token.to_dict()))) == token
    assert ContinuationToken.parse(token.to_json()) == token
    assert ContinuationToken.parse(f"  {text}\n") == token


def test_is_immutable_hashable_and_ordered_by_position() -> None:
    a, b = ContinuationToken(RESPONSE_ID, 3), ContinuationToken(RESPONSE_ID, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.sequence_number = 5  # type: ignore[misc]
    assert a < b and len({a, b, ContinuationToken(RESPONSE_ID, 3)}) == 2
    assert a.advanced(4) == b and a.starting_after == 3


def test_agent_framework_tokens_are_accepted_without_a_sequence_number() -> None:
    token = ContinuationToken.parse({"response_id": "resp_abc"})
    assert token.sequence_number is None and token.starting_after is None
    assert ContinuationToken.parse({"responseId": "resp_abc", "sequenceNumber": 9}).sequence_number == 9  # .NET

    class FrameworkToken:
        response_id = "resp_xyz"

    assert ContinuationToken.parse(FrameworkToken()).response_id == "resp_xyz"
    assert ContinuationToken.parse(ContinuationToken.parse("anb1." + str(token)[5:])) == token


@pytest.mark.parametrize("bad", [
    "anb1.", "anb1.####", "anb2.abc", "resp_abc", "", "{not json", '{"sequence_number": 3}', 17, None, [1],
    {"response_id": 3}, {"response_id": "resp x"}, {"response_id": "resp_a", "sequence_number": "3"},
    {"response_id": "resp_a", "sequence_number": -5},
])
def test_malformed_or_foreign_tokens_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidContinuationToken):
        ContinuationToken.parse(bad)


def test_every_truncation_and_every_single_character_change_is_detected() -> None:
    text = str(ContinuationToken(RESPONSE_ID, 12345))
    for cut in range(5, len(text)):
        with pytest.raises(InvalidContinuationToken):
            ContinuationToken.parse(text[:cut])
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(5, len(text)):
        replacement = alphabet[(alphabet.index(text[i]) + 1) % len(alphabet)]
        changed = text[:i] + replacement + text[i + 1:]
        try:
            parsed = ContinuationToken.parse(changed)
        except InvalidContinuationToken:
            continue
        # The last character may carry only padding bits; it must then decode to the same token.
        assert parsed == ContinuationToken(RESPONSE_ID, 12345)


def test_carries_no_secret_and_a_readable_repr() -> None:
    token = ContinuationToken(RESPONSE_ID, 1)
    assert repr(token) == f"ContinuationToken(response_id='{RESPONSE_ID}', sequence_number=1)"
    assert set(token.to_dict()) == {"response_id", "sequence_number"}


def test_is_a_value_error_too() -> None:
    with pytest.raises(ValueError, match="not a continuation token"):
        ContinuationToken.parse("hello")
