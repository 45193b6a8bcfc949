"""ContinuationToken: immutable, printable, parseable, comparable, JSON-serialisable, strict about damage."""

from __future__ import annotations

import base64
import dataclasses
import json
import zlib

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


def _checksummed(payload: str) -> str:
    """A token string with a valid checksum around any payload, as a damaged copy might carry."""
    raw = payload.encode()
    return "anb1." + base64.urlsafe_b64encode(raw + zlib.crc32(raw).to_bytes(4, "big")).decode().rstrip("=")


@pytest.mark.parametrize("payload", [f"{RESPONSE_ID}:-", f"{RESPONSE_ID}:{'9' * 4300}", f"{RESPONSE_ID}:{'1' * 25}",
                                     f"{RESPONSE_ID}:-7", f"{RESPONSE_ID}:+3", f"{RESPONSE_ID}:03", f"{RESPONSE_ID}: 3",
                                     f"{RESPONSE_ID}\n:3", f"{RESPONSE_ID}:3\n", ":3", "resp_é:3"])
def test_a_checksum_valid_token_with_a_bad_number_or_id_is_an_invalid_token(payload: str) -> None:
    with pytest.raises(InvalidContinuationToken, match="damaged"):
        ContinuationToken.parse(_checksummed(payload))


def test_a_response_id_ending_in_a_newline_is_refused() -> None:
    for value in (f"{RESPONSE_ID}\n", f"{RESPONSE_ID}\r\n", f"\n{RESPONSE_ID}"):
        with pytest.raises(InvalidContinuationToken, match="needs a response id"):
            ContinuationToken(value, 1)
        with pytest.raises(InvalidContinuationToken):
            ContinuationToken.parse({"response_id": value, "sequence_number": 1})


def test_tokens_without_a_sequence_number_compare_before_every_position() -> None:
    start, first, later = (ContinuationToken(RESPONSE_ID), ContinuationToken(RESPONSE_ID, -1),
                           ContinuationToken(RESPONSE_ID, 5))
    assert start < first < later and later > start and start <= start and not start < start
    assert sorted([later, start, first]) == [start, first, later]
    assert max(ContinuationToken("resp_a"), ContinuationToken("resp_a", 0)).sequence_number == 0


@pytest.mark.parametrize(("text", "message"), [
    ('{"response_id": "resp_a", "sequence_number": 3.0}', "must be an integer"),
    ('{"response_id": "resp_a", "sequence_number": 1e30}', "must be an integer"),
    ('{"response_id": "resp_a", "sequence_number": 99999999999999999999}', "2\\*\\*63"),
    ('["resp_a", 3]', "not a continuation token"),
    ('{"response_id": "resp_a", "sequence_number": 3', "not valid JSON"),
])
def test_a_json_token_says_what_is_wrong_with_it(text: str, message: str) -> None:
    with pytest.raises(InvalidContinuationToken, match=message):
        ContinuationToken.parse(text)
