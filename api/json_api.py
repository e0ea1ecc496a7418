"""Generic HTTP plumbing: pydantic-validated routes, JSON errors, slash merging, OpenAPI.

Routes are declared once on a :class:`JsonApi` with the pydantic model that validates their
input; the same declaration registers the Flask view and produces the OpenAPI document, so
documentation cannot drift from validation.

A handler returns a reply model (described in the OpenAPI document when declared with
``reply=``), a plain JSON value or a Flask ``Response``. Example::

    class EchoRequest(ApiModel):
        text: str
        times: int = 1

    class EchoReply(BaseModel):
        echo: str

    @api.post("/echo", body=EchoRequest, reply=EchoReply, status=200)
    def echo(body: EchoRequest) -> EchoReply:
        return EchoReply(echo=body.text * body.times)
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar, get_args

from flask import Flask, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, model_validator
from pydantic.json_schema import models_json_schema
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
# Exception type -> HTTP status, or a function of the exception that gives it.
ErrorStatuses = Mapping[type[Exception], int | Callable[[Any], int]]

# Besides JSON null, strings that clients send to mean "not given": an untouched form field,
# and what JavaScript's FormData makes of null and undefined.
BLANK_STRINGS = ("", "null", "undefined")
PATH_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")  # Flask's <name> or <converter:name>
MAX_JSON_DEPTH = 64  # far beyond any real request; see _unstorable_json


class ApiError(Exception):
    """A client-facing error: becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ApiModel(BaseModel):
    """Base of request models: unknown keys ignored, blank values mean "use the default".

    NaN and infinities (which Python's JSON parser accepts) are refused.
    """

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _drop_blank_values(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not _is_blank(v)}
        return data


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value in BLANK_STRINGS)


def validation_message(error: ValidationError) -> str:
    """One line per problem, naming the field, e.g. ``hop_length: Input should be ...``."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_model(model: type[M], data: Any) -> M:
    """Validate ``data`` into ``model`` or raise a 400 :class:`ApiError`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ApiError(400, "Request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, validation_message(exc)) from None


BodyKind = Literal["json", "form", "query"]


@dataclass(frozen=True)
class Endpoint:
    """One declared route: what Flask registers and what OpenAPI describes."""

    method: str
    rule: str
    handler: Callable[..., Any]
    model: type[BaseModel] | None
    body_kind: BodyKind
    status: int
    reply: Any = None  # a reply model, or a type such as list[Model]
    files: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass
class JsonApi:
    """A list of routes that can be installed on any number of Flask apps."""

    title: str
    version: str
    endpoints: list[Endpoint] = field(default_factory=list)

    def post(
        self,
        rule: str,
        *,
        body: type[BaseModel] | None = None,
        form: type[BaseModel] | None = None,
        files: Iterable[str] = (),
        reply: Any = None,
        status: int = 201,
        tags: Iterable[str] = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a POST route; the handler gets the validated model, then path arguments."""
        kind: BodyKind = "form" if form is not None else "json"
        model = form or body
        return self._declare(
            Endpoint("POST", rule, _unset, model, kind, status, reply, tuple(files), tuple(tags))
        )

    def get(
        self,
        rule: str,
        *,
        query: type[BaseModel] | None = None,
        reply: Any = None,
        status: int = 200,
        tags: Iterable[str] = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a GET route; with ``query`` the handler gets the validated query string."""
        return self._declare(
            Endpoint("GET", rule, _unset, query, "query", status, reply, (), tuple(tags))
        )

    def _declare(self, endpoint: Endpoint) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.endpoints.append(replace(endpoint, handler=handler))
            return handler

        return decorator

    def init_app(self, app: Flask, error_statuses: ErrorStatuses) -> None:
        """Register every route (with and without trailing slash), JSON errors, /openapi.json.

        ``error_statuses`` maps exceptions raised by handlers to the status clients get, with
        the exception's text as the error message.
        """
        app.wsgi_app = MergeSlashesMiddleware(app.wsgi_app)
        install_json_errors(app, error_statuses)
        for endpoint in self.endpoints:
            view = _make_view(endpoint)
            name = f"{endpoint.method} {endpoint.rule}"
            for rule in _slash_variants(endpoint.rule):
                app.add_url_rule(rule, name, view, methods=[endpoint.method])
        app.add_url_rule("/openapi.json", "openapi", lambda: jsonify(self.openapi()))

    def openapi(self) -> dict[str, Any]:
        """OpenAPI 3.1 document of every declared route, schemas from the pydantic models."""
        requests = {e.model for e in self.endpoints if e.model}
        replies = {r for e in self.endpoints for r in _models_in(e.reply)}
        _, defs = models_json_schema(
            [(m, "validation") for m in sorted(requests, key=_name)]
            + [(m, "serialization") for m in sorted(replies, key=_name)],
            ref_template="#/components/schemas/{model}",
        )
        paths: dict[str, dict[str, Any]] = {}
        for endpoint in self.endpoints:
            path = PATH_PARAMETER.sub(r"{\1}", endpoint.rule)
            paths.setdefault(path, {})[endpoint.method.lower()] = _operation(endpoint)
        schemas = dict(defs.get("$defs", {}))
        schemas["Error"] = {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        }
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "paths": paths,
            "components": {"schemas": schemas},
        }


def _slash_variants(rule: str) -> list[str]:
    stripped = rule.rstrip("/")
    return [rule] if not stripped else [stripped, stripped + "/"]


def _make_view(endpoint: Endpoint) -> Callable[..., Any]:
    def view(**path_args: Any) -> Any:
        args: list[Any] = []
        if endpoint.model is not None:
            args.append(parse_model(endpoint.model, _request_data(endpoint.body_kind)))
        result = endpoint.handler(*args, **path_args)
        if isinstance(result, Response):
            return result
        return jsonify(_jsonable(result)), endpoint.status

    view.__doc__ = endpoint.handler.__doc__
    return view


def _unset(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("an endpoint is declared before its handler is attached")


def _name(model: type[BaseModel]) -> str:
    return model.__name__


def _models_in(reply: Any) -> list[type[BaseModel]]:
    """The reply models a reply annotation names: ``Model`` or ``list[Model]``."""
    if isinstance(reply, type) and issubclass(reply, BaseModel):
        return [reply]
    return [arg for arg in get_args(reply) if isinstance(arg, type) and issubclass(arg, BaseModel)]


def _reply_schema(reply: Any) -> dict[str, Any] | None:
    """A reply model as a reference to its component; other types (list[Model], list[dict])
    as their own JSON schema."""
    if reply is None:
        return None
    schema = TypeAdapter(reply).json_schema(
        mode="serialization", ref_template="#/components/schemas/{model}"
    )
    schema.pop("$defs", None)  # the models are in the document's components
    models = _models_in(reply)
    return {"$ref": f"#/components/schemas/{reply.__name__}"} if reply in models else schema


def _jsonable(result: Any) -> Any:
    """Reply models as dicts (keys left unset stay out); lists of them likewise."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", exclude_unset=True)
    if isinstance(result, list):
        return [_jsonable(item) for item in result]
    return result


def _request_data(kind: BodyKind) -> Any:
    if kind == "form":
        return request.form.to_dict()
    if kind == "query":
        return request.args.to_dict()
    raw = request.get_data(cache=True)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ApiError(400, f"Request body is nested more than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}") from None
    problem = _unstorable_json(data)
    if problem:
        raise ApiError(400, problem)
    return data


def _unstorable_json(data: Any) -> str | None:
    """Why a parsed body could not be stored and later sent back to a browser, if it cannot.

    Python's json (so ``requests`` too) writes NaN/Infinity, e.g. for a missing pandas value,
    and browsers refuse them; a body nested near Python's recursion limit could be stored but
    never written back as JSON.
    """
    level: list[tuple[tuple, Any]] = [((), {"body": data})]
    for _ in range(MAX_JSON_DEPTH + 1):
        deeper = []
        for path, container in level:
            items = container.items() if isinstance(container, dict) else enumerate(container)
            for key, value in items:
                if isinstance(value, float) and not math.isfinite(value):
                    where = ".".join(map(str, (*path[1:], key))) if path else "body"
                    return f"{where}: {json.dumps(value)} is not a JSON number (send null instead)"
                if isinstance(value, dict | list):
                    deeper.append(((*path, key), value))
        if not deeper:
            return None
        level = deeper
    return f"Request body is nested more than {MAX_JSON_DEPTH} levels"


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    doc = (endpoint.handler.__doc__ or "").strip()
    summary, _, description = doc.partition("\n")
    operation: dict[str, Any] = {
        "operationId": re.sub(r"\W+", "_", f"{endpoint.method} {endpoint.rule}").strip("_").lower(),
        "summary": summary,
        "responses": {
            str(endpoint.status): _success(endpoint.reply),
            "4XX": {
                "description": "Client error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if description.strip():
        operation["description"] = " ".join(description.split())
    if endpoint.tags:
        operation["tags"] = list(endpoint.tags)
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PATH_PARAMETER.findall(endpoint.rule)
    ]
    model_ref = (
        {"$ref": f"#/components/schemas/{endpoint.model.__name__}"} if endpoint.model else None
    )
    if endpoint.body_kind == "query" and endpoint.model is not None:
        schema = endpoint.model.model_json_schema()
        for name, field_schema in schema["properties"].items():
            required = name in schema.get("required", ())
            parameters.append(
                {"name": name, "in": "query", "required": required, "schema": field_schema}
            )
    elif endpoint.body_kind == "form":
        file_props = {name: {"type": "string", "format": "binary"} for name in endpoint.files}
        schema = {"allOf": [model_ref, {"type": "object", "properties": file_props}]}
        operation["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    elif model_ref is not None:
        operation["requestBody"] = {"content": {"application/json": {"schema": model_ref}}}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _success(reply: Any) -> dict[str, Any]:
    schema = _reply_schema(reply)
    if schema is None:
        return {"description": "Success"}
    return {"description": "Success", "content": {"application/json": {"schema": schema}}}


def install_json_errors(app: Flask, error_statuses: ErrorStatuses) -> None:
    """Every 4xx/5xx becomes ``{"error": message}``; never an HTML page."""
    for exception_type, status in error_statuses.items():
        app.register_error_handler(
            exception_type,
            lambda exc, status=status: (
                jsonify(error=str(exc)),
                status(exc) if callable(status) else status,
            ),
        )

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return jsonify(error=exc.message), exc.status

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        message = "Request body too large"
        if limit:
            message += f": the limit is {limit / (1024 * 1024):g} MB (max_upload_mb)"
        return jsonify(error=message), 413

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return jsonify(error=f"{exc.name}: {exc.description}"), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("Unhandled error on %s %s", request.method, request.path)
        return jsonify(error=f"Internal server error: {type(exc).__name__}"), 500


class MergeSlashesMiddleware:
    """WSGI middleware: ``//post-annotations/x`` is routed as ``/post-annotations/x``.

    Werkzeug's own slash merging answers with a redirect, which a CORS preflight cannot follow.
    """

    def __init__(self, wsgi_app: Callable[..., Any]):
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if "//" in path:
            environ["PATH_INFO"] = re.sub("/{2,}", "/", path)
        return self.wsgi_app(environ, start_response)
