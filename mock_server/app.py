"""The Starlette application: routes of the Responses API, the control endpoints, auth and error handling.

Control endpoints (never rate limited; behind the API key when one is set, except ``/mock/health``):

* ``GET /mock/health``: ``{"status", "responses", "creates", "statuses"}`` (``creates`` counts every accepted create
  since start);
* ``GET|PUT|DELETE /mock/faults``: the server-wide fault spec, ``{"faults": "..."}``;
* ``GET|PUT|DELETE /mock/options``: the default generation options, ``{"options": "..."}``;
* ``GET|PUT /mock/webhooks``: where webhooks go, and the deliveries made;
* ``GET|PUT|DELETE /mock/rate_limits``: ``{"requests_per_minute", "tokens_per_minute"}`` per key, and each key's
  remaining budget by fingerprint (see :mod:`mock_server.ratelimit`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import ServerConfig
from .errors import APIError, bad_request, invalid_type
from .faults import FaultSpec
from .generation import GenerationOptions
from .keys import KeySet
from .limits import Limits, parse_json
from .ratelimit import RateLimiter, RateLimitMiddleware, parse_rate_limits
from .service import ResponseService
from .streaming import EventStream
from .validation import parse_create

FAULT_HEADER = "x-mock-faults"


def create_app(config: ServerConfig | None = None) -> Starlette:
    """Build the ASGI app for ``config`` (defaults: in memory, no faults, no key)."""
    config = config or ServerConfig()
    service = ResponseService(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.startup()
        try:
            yield
        finally:
            await service.shutdown()

    limiter = RateLimiter(config.rate_limit_rpm, config.rate_limit_tpm,
                          output_tokens=lambda: service.options.tokens)
    api = _ResponsesAPI(service, limiter)
    routes = [
        Route("/v1/responses", api.create, methods=["POST"]),
        Route("/v1/responses/{response_id}", api.retrieve, methods=["GET"]),
        Route("/v1/responses/{response_id}", api.delete, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/cancel", api.cancel, methods=["POST"]),
        Route("/v1/responses/{response_id}/input_items", api.input_items, methods=["GET"]),
        Route("/v1/models", api.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", api.get_model, methods=["GET"]),
        Route("/mock/health", api.health, methods=["GET"]),
        Route("/mock/faults", api.faults, methods=["GET", "PUT", "DELETE"]),
        Route("/mock/options", api.options, methods=["GET", "PUT", "DELETE"]),
        Route("/mock/webhooks", api.webhooks, methods=["GET", "PUT"]),
        Route("/mock/rate_limits", api.rate_limits, methods=["GET", "PUT", "DELETE"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={APIError: _api_error, HTTPException: _http_error, Exception: _unexpected_error},
    )
    app.state.service = service
    app.state.rate_limiter = limiter
    app.state.keys = KeySet([*([config.api_key] if config.api_key else []), *config.api_keys])
    # Inside the auth check (added later, so it runs first): a request without an accepted key costs nothing.
    app.add_middleware(RateLimitMiddleware, limiter=limiter, max_body_bytes=config.limits.max_body_bytes)
    if app.state.keys.enabled:
        app.add_middleware(_BearerAuth, keys=app.state.keys)
    return app


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.to_response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}."
    else:
        message = str(exc.detail)
    return APIError(exc.status_code, message, param=None).to_response()


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    return APIError(500, "The mock server hit an unexpected error; this is a bug in mock_server.",
                    type="server_error").to_response()


class _BearerAuth:
    """Answers 401 in the OpenAI shape unless the request carries the configured bearer key.

    ``/mock/health`` stays open so that supervisors can probe the server without the key.
    """

    def __init__(self, app: ASGIApp, keys: KeySet) -> None:
        self.app = app
        self._keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/mock/health":
            headers = dict(scope["headers"])
            given = headers.get(b"authorization")
            if given is None or not self._keys.accepts(given):
                message = ("You didn't provide an API key. Send it in an Authorization header using Bearer auth "
                           "(Authorization: Bearer YOUR_KEY)." if given is None else
                           "Incorrect API key provided.")
                error = APIError(401, message, code=None if given is None else "invalid_api_key")
                await error.to_response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _ResponsesAPI:
    def __init__(self, service: ResponseService, limiter: RateLimiter) -> None:
        self.service = service
        self.limiter = limiter
        self.limits = service.config.limits

    async def _gate(self, request: Request, body: bytes = b"", response_id: str | None = None) -> FaultSpec:
        """Parse the fault header and raise an injected HTTP error if this request should get one."""
        header = FaultSpec.parse(request.headers.get(FAULT_HEADER), param="X-Mock-Faults")
        identity = b"\0".join([request.method.encode(), request.url.path.encode(), request.url.query.encode(),
                               body, request.headers.get(FAULT_HEADER, "").encode()])
        self.service.check_http_faults(identity, header, response_id)
        return header

    async def create(self, request: Request) -> Response:
        raw = await _read_body(request, self.limits)
        header = await self._gate(request, raw)
        params = parse_create(parse_json(raw, self.limits))
        run = await self.service.create_saved(params, header)
        if params.stream:
            return EventStream(run, 0, cancel_on_disconnect=not params.background)  # type: ignore[return-value]
        if not params.background:
            await run.wait_finished()
        return JSONResponse(run.snapshot())

    async def retrieve(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        await self._gate(request, response_id=response_id)
        query = request.query_params
        stream = _bool_query(query.get("stream"), "stream")
        starting_after = _int_query(query.get("starting_after"), "starting_after")
        run = self.service.get(response_id)
        if not stream:
            return JSONResponse(run.snapshot())
        self.service.check_streamable(run)
        start = 0 if starting_after is None else starting_after + 1
        return EventStream(run, start)  # type: ignore[return-value]

    async def cancel(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        await self._gate(request, response_id=response_id)
        run = self.service.get(response_id)
        if not run.record.background:
            raise bad_request("Only responses created with background=true can be cancelled.", param=None)
        run.cancel()
        await self.service.saved(run, what=f"save the cancellation of {response_id}")
        return JSONResponse(run.snapshot())

    async def delete(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        await self._gate(request, response_id=response_id)
        self.service.get(response_id)
        await self.service.delete_saved(response_id)
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})

    async def input_items(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        await self._gate(request, response_id=response_id)
        run = self.service.get(response_id)
        query = request.query_params
        limit = _int_query(query.get("limit"), "limit")
        limit = 20 if limit is None else limit
        if not 1 <= limit <= 100:
            raise bad_request("Invalid 'limit': expected a value between 1 and 100.", param="limit")
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise bad_request(f"Invalid 'order': expected 'asc' or 'desc', got '{order}'.", param="order")
        items = list(run.record.input_items)
        if order == "desc":
            items.reverse()
        after = query.get("after")
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise bad_request(f"Invalid 'after': no input item with id '{after}'.", param="after")
            items = items[ids.index(after) + 1:]
        page = items[:limit]
        return JSONResponse({
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        })

    async def list_models(self, request: Request) -> Response:
        await self._gate(request)
        return JSONResponse({"object": "list", "data": [_model(m) for m in self.service.config.models]})

    async def get_model(self, request: Request) -> Response:
        await self._gate(request)
        return JSONResponse(_model(request.path_params["model_id"]))

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", **self.service.stats()})

    async def faults(self, request: Request) -> Response:
        if request.method == "PUT":
            body = await _json_object(request, self.limits)
            spec = body.get("faults", "")
            if not isinstance(spec, str):
                raise invalid_type("faults", "a string", spec)
            self.service.set_faults(FaultSpec.parse(spec, param="faults"))
        elif request.method == "DELETE":
            self.service.set_faults(FaultSpec())
        return JSONResponse({"faults": str(self.service.server_faults())})

    async def webhooks(self, request: Request) -> Response:
        """``PUT {"urls", "secret", "faults"}`` sets where webhooks go; ``GET`` also lists the deliveries made."""
        if request.method == "PUT":
            self.service.webhooks.configure(await _json_object(request, self.limits))
        return JSONResponse(self.service.webhooks.describe())

    async def rate_limits(self, request: Request) -> Response:
        """``PUT {"requests_per_minute", "tokens_per_minute"}`` (null: unlimited) sets the per-key limits, and every
        key's budget starts full; ``DELETE`` removes them; ``GET`` also shows each key's remaining budget."""
        if request.method == "PUT":
            self.limiter.configure(*parse_rate_limits(await _json_object(request, self.limits)))
        elif request.method == "DELETE":
            self.limiter.configure(None, None)
        return JSONResponse(self.limiter.describe())

    async def options(self, request: Request) -> Response:
        if request.method == "PUT":
            body = await _json_object(request, self.limits)
            spec = body.get("options", "")
            if not isinstance(spec, str):
                raise invalid_type("options", "a string", spec)
            self.service.options = GenerationOptions.parse(spec, self.service.options, param="options")
        elif request.method == "DELETE":
            self.service.options = self.service.config.options
        return JSONResponse({"options": vars(self.service.options)})


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The request body, refused with a 413 as soon as it is larger than the limit (before reading all of it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise limits.too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise limits.too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_object(request: Request, limits: Limits) -> dict[str, Any]:
    body = parse_json(await _read_body(request, limits), limits)
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def _bool_query(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise bad_request(f"Invalid value for '{name}': expected true or false, got '{value}'.", param=name)


def _int_query(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"Invalid type for '{name}': expected an integer, but got '{value}'.", param=name,
                          code="invalid_type") from None
    if number < 0:
        raise bad_request(f"Invalid '{name}': integer below minimum value. Expected a value >= 0, but got "
                          f"{number} instead.", param=name, code="integer_below_min_value")
    return number


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "agent-nb-mock"}

