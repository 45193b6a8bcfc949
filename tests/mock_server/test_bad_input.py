"""Bad input gets the right 4xx in the OpenAI error shape, and the server keeps serving."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mock_server import MockServer, ServerConfig

from ..conftest import FAST


def assert_openai_error(response: httpx.Response, status: int, *, param: str | None = None,
                        message: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    if param is not None:
        assert error["param"] == param
    assert message in error["message"]
    return dict(error)


BAD_BODIES = [
    ({"input": "x"}, "model", "Missing required parameter: 'model'"),
    ({"model": 3, "input": "x"}, "model", "expected a string, but got an integer"),
    ({"model": "o3", "input": 5}, "input", "expected a string or an array of input items"),
    ({"model": "o3", "input": "x", "background": "yes"}, "background", "expected a boolean, but got a string"),
    ({"model": "o3", "input": "x", "stream": 1}, "stream", "expected a boolean"),
    ({"model": "o3", "input": "x", "store": None, "background": True, "metadata": []}, "metadata",
     "expected an object"),
    ({"model": "o3", "input": "x", "background": True, "store": False}, "store", "requires 'store' to be true"),
    ({"model": "o3", "input": "x", "max_output_tokens": 3}, "max_output_tokens", "Expected a value >= 16"),
    ({"model": "o3", "input": "x", "max_output_tokens": "lots"}, "max_output_tokens", "expected an integer"),
    ({"model": "o3", "input": "x", "metadata": {"k": 1}}, "metadata.k", "expected a string"),
    ({"model": "o3", "input": [{"type": "message", "role": "robot", "content": "hi"}]}, "input[0].role",
     "expected one of user"),
    ({"model": "o3", "input": [{"role": "user", "content": 7}]}, "input[0].content", "expected a string or an array"),
    ({"model": "o3", "input": ["plain"]}, "input[0]", "expected an object"),
    ({"model": "o3", "input": "x", "instructions": ["a"]}, "instructions", "expected a string"),
    ({"model": "o3", "input": "x", "metadata": {"mock_options": "tokens=-1"}}, "metadata.mock_options",
     "must not be negative"),
]


@pytest.mark.parametrize(("body", "param", "message"), BAD_BODIES)
def test_bad_create_bodies_name_the_parameter(http: httpx.Client, body: dict[str, Any], param: str,
                                              message: str) -> None:
    assert_openai_error(http.post("/v1/responses", json=body), 400, param=param, message=message)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"model": "o3"'])
def test_malformed_json_is_a_400(http: httpx.Client, raw: bytes) -> None:
    response = http.post("/v1/responses", content=raw, headers={"content-type": "application/json"})
    assert_openai_error(response, 400, message="could not parse the JSON body")


def test_a_json_value_that_is_not_an_object_is_a_400(http: httpx.Client) -> None:
    assert_openai_error(http.post("/v1/responses", json=[1, 2]), 400, message="must be a JSON object")


@pytest.mark.parametrize("path", ["/v1/responses/resp_missing", "/v1/responses/resp_missing/input_items"])
def test_unknown_ids_are_a_404_naming_the_id(http: httpx.Client, path: str) -> None:
    assert_openai_error(http.get(path), 404, message="Response with id 'resp_missing' not found.")


def test_cancel_and_delete_of_unknown_ids_are_404(http: httpx.Client) -> None:
    assert_openai_error(http.post("/v1/responses/resp_gone/cancel"), 404, message="resp_gone")
    assert_openai_error(http.delete("/v1/responses/resp_gone"), 404, message="resp_gone")


def _create(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post("/v1/responses", json={"model": "o3", "input": "x",
                                                "metadata": {"mock_options": "tokens=5,tps=0,ttft=0"}, **body})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_streaming_a_non_background_response_is_a_400(http: httpx.Client) -> None:
    response_id = _create(http)["id"]
    assert_openai_error(http.get(f"/v1/responses/{response_id}", params={"stream": "true"}), 400,
                        message="cannot be streamed because it was not created with background=true")


def test_cancelling_a_non_background_response_is_a_400(http: httpx.Client) -> None:
    response_id = _create(http)["id"]
    assert_openai_error(http.post(f"/v1/responses/{response_id}/cancel"), 400, message="background=true")


@pytest.mark.parametrize(("query", "param", "message"), [
    ({"stream": "true", "starting_after": "-1"}, "starting_after", "Expected a value >= 0"),
    ({"stream": "true", "starting_after": "two"}, "starting_after", "expected an integer"),
    ({"stream": "maybe"}, "stream", "expected true or false"),
])
def test_bad_query_parameters(http: httpx.Client, query: dict[str, str], param: str, message: str) -> None:
    response_id = _create(http, background=True)["id"]
    assert_openai_error(http.get(f"/v1/responses/{response_id}", params=query), 400, param=param, message=message)


@pytest.mark.parametrize(("query", "param"), [({"limit": "0"}, "limit"), ({"limit": "500"}, "limit"),
                                              ({"order": "sideways"}, "order"), ({"after": "msg_nope"}, "after")])
def test_bad_input_items_queries(http: httpx.Client, query: dict[str, str], param: str) -> None:
    response_id = _create(http)["id"]
    assert_openai_error(http.get(f"/v1/responses/{response_id}/input_items", params=query), 400, param=param)


def test_unknown_route_and_wrong_method(http: httpx.Client) -> None:
    assert_openai_error(http.get("/v1/nothing-here"), 404, message="Invalid URL (GET /v1/nothing-here)")
    assert_openai_error(http.put("/v1/responses"), 405, message="Method PUT is not allowed")


def test_bad_control_requests(http: httpx.Client) -> None:
    assert_openai_error(http.put("/mock/faults", json={"faults": "boom=1"}), 400, message="Unknown mock fault 'boom'")
    assert_openai_error(http.put("/mock/faults", json={"faults": 3}), 400, param="faults")
    assert_openai_error(http.put("/mock/options", json={"options": "mode=loud"}), 400, message="expected text")


def test_the_server_keeps_serving_after_a_burst_of_bad_requests(http: httpx.Client) -> None:
    for body, _, _ in BAD_BODIES:
        http.post("/v1/responses", json=body)
    for raw in (b"{", b"\x00", b"[]"):
        http.post("/v1/responses", content=raw)
    assert _create(http)["status"] == "completed"


def test_api_key_is_required_when_configured() -> None:
    with MockServer(ServerConfig(options=FAST, api_key="sk-secret-123")) as server, \
            httpx.Client(base_url=server.base_url, timeout=10) as http:
        missing = assert_openai_error(http.get("/v1/models"), 401, message="didn't provide an API key")
        wrong = assert_openai_error(http.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"}), 401,
                                    message="Incorrect API key")
        assert "sk-wrong" not in wrong["message"] and "sk-secret" not in missing["message"]
        ok = http.get("/v1/models", headers={"Authorization": "Bearer sk-secret-123"})
        assert ok.status_code == 200
