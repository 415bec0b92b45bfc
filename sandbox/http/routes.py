"""The Lambda operations served over HTTP: each is its method and path from
botocore's model (lambda/2015-03-31), the body size it accepts, and a
handler that turns the request into a sandbox.Runtime call and the result
into Lambda's response.  Refusals are LambdaErrors; server.py renders them."""
from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass, field

from ..functions.errors import InvalidParameterValueException, RequestEntityTooLargeException, \
    RequestTooLargeException
from ..functions.events import MAX_EVENT_PAYLOAD
from ..functions.runtime.wire import MAX_PAYLOAD
from .shapes import Fields, UnknownOperationException, architectures, destination, event_config_dict, page, \
    parse_body, runtime_name, zip_bytes

MAX_CODE_REQUEST = 69905067          # Lambda: a 50 MB zip, base64-encoded, in the JSON body
MAX_CONTROL_REQUEST = 1024 * 1024    # any other control-plane body


@dataclass
class Request:
    """What a handler sees: the caller, path parameters, query, headers
    (lower-case names), and the whole body."""
    runtime: object
    principal: str
    params: dict
    query: dict
    headers: dict
    body: bytes = b""
    destinations_dir: str | None = None


@dataclass
class Response:
    status: int
    body: object = None               # dict -> JSON; bytes as they are; None -> empty
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    pattern: re.Pattern
    names: tuple
    handler: object
    max_body: object                  # int, or a function of the headers (Invoke)
    too_large: type = RequestTooLargeException


ROUTES: list[Route] = []


def route(operation, method, path, max_body=MAX_CONTROL_REQUEST, too_large=RequestTooLargeException):
    names = tuple(re.findall(r"{(\w+)}", path))
    pattern = re.compile("^" + re.sub(r"{\w+}", "([^/]+)", path) + "$")

    def register(handler):
        ROUTES.append(Route(operation, method, pattern, names, handler, max_body, too_large))
        return handler
    return register


def match(method: str, segments_path: str, decode) -> tuple[Route, dict]:
    """The route for a normalized path (still percent-encoded); path
    parameters are decoded with `decode` after matching, so an encoded "/"
    in a name cannot change the route."""
    for candidate in ROUTES:
        found = candidate.pattern.match(segments_path)
        if found and candidate.method == method:
            return candidate, {n: decode(v) for n, v in zip(candidate.names, found.groups())}
    raise UnknownOperationException(f"Unknown operation: {method} {segments_path}")


def body_limit(route_: Route, headers: dict) -> int:
    return route_.max_body(headers) if callable(route_.max_body) else route_.max_body


# -- Invoke --------------------------------------------------------------------------------
def _invoke_limit(headers):
    return MAX_EVENT_PAYLOAD if headers.get("x-amz-invocation-type") == "Event" else MAX_PAYLOAD


@route("Invoke", "POST", "/2015-03-31/functions/{FunctionName}/invocations", max_body=_invoke_limit)
def invoke(r: Request) -> Response:
    for unsupported in ("x-amz-tenant-id", "x-amz-durable-execution-name"):
        if r.headers.get(unsupported):
            raise InvalidParameterValueException(f"{unsupported} is not supported by this server")
    client_context = r.headers.get("x-amz-client-context")
    if client_context is not None:
        try:
            client_context = base64.b64decode(client_context, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParameterValueException("X-Amz-Client-Context must be base64-encoded JSON") from None
    result = r.runtime.invoke(r.params["FunctionName"], r.body, qualifier=r.query.get("Qualifier"),
                              log_type=r.headers.get("x-amz-log-type"), client_context=client_context,
                              trace_id=r.headers.get("x-amzn-trace-id"),
                              invocation_type=r.headers.get("x-amz-invocation-type", "RequestResponse"),
                              principal=r.principal)
    headers = {"x-amzn-RequestId": result.request_id, "X-Amz-Executed-Version": result.executed_version}
    if result.function_error:
        headers["X-Amz-Function-Error"] = result.function_error
    if result.log_result is not None:
        headers["X-Amz-Log-Result"] = result.log_result
    return Response(result.status_code, result.payload if result.status_code == 200 else None, headers)


# -- functions -----------------------------------------------------------------------------
_SETTINGS = (("Handler", "handler", "str"), ("MemorySize", "memory_mb", "int"), ("Timeout", "timeout_s", "int"),
             ("Description", "description", "str"))


def _settings(body: Fields) -> dict:
    """The FunctionConfiguration fields shared by Create and Update."""
    out = {}
    for field_name, argument, kind in _SETTINGS:
        value = getattr(body, kind)(field_name)
        if value is not None:
            out[argument] = value
    runtime = runtime_name(body.str("Runtime"))
    if runtime is not None:
        out["runtime"] = runtime
    environment = body.obj("Environment")
    if environment is not None:
        variables = environment.obj("Variables")
        environment.refuse_unknown()
        out["environment"] = dict(variables._data) if variables is not None else {}
    storage = body.obj("EphemeralStorage")
    if storage is not None:
        out["ephemeral_storage_mb"] = storage.int("Size", required=True)
        storage.refuse_unknown()
    layers = body.list_of_str("Layers")
    if layers is not None:
        out["layers"] = layers
    body.str("Role")      # required by the model; environments get no role credentials from it (docs)
    return out


@route("CreateFunction", "POST", "/2015-03-31/functions", max_body=MAX_CODE_REQUEST,
       too_large=RequestEntityTooLargeException)
def create_function(r: Request) -> Response:
    body = Fields(parse_body(r.body))
    name = body.str("FunctionName", required=True)
    code = zip_bytes(body.obj("Code", required=True))
    if body.str("PackageType") not in (None, "Zip"):
        raise InvalidParameterValueException("PackageType: only Zip is supported by this server")
    architectures(body.list_of_str("Architectures"))
    settings = _settings(body)
    publish = body.bool("Publish") or False
    if "handler" not in settings:
        raise InvalidParameterValueException("Handler is required for a Zip function")
    body.refuse_unknown()
    handler = settings.pop("handler")
    fc = r.runtime.create_function(name, code, handler, publish=publish, **settings)
    return Response(201, fc.to_dict())


@route("GetFunction", "GET", "/2015-03-31/functions/{FunctionName}")
def get_function(r: Request) -> Response:
    fc = r.runtime.get_function(r.params["FunctionName"], qualifier=r.query.get("Qualifier"))
    shown = {"Configuration": fc.to_dict(), "Code": {"RepositoryType": "S3", "Location": ""}}
    concurrency = r.runtime.get_function_concurrency(fc.function_name)
    if concurrency:
        shown["Concurrency"] = concurrency
    return Response(200, shown)


@route("GetFunctionConfiguration", "GET", "/2015-03-31/functions/{FunctionName}/configuration")
def get_function_configuration(r: Request) -> Response:
    return Response(200, r.runtime.get_function(r.params["FunctionName"], qualifier=r.query.get("Qualifier"))
                    .to_dict())


def _version_key(item: dict):
    version = item["Version"]
    return [item["FunctionName"], -1 if version == "$LATEST" else int(version)]


@route("ListFunctions", "GET", "/2015-03-31/functions")
def list_functions(r: Request) -> Response:
    if r.query.get("MasterRegion"):
        raise InvalidParameterValueException("MasterRegion is not supported by this server")
    every_version = r.query.get("FunctionVersion")
    if every_version not in (None, "ALL"):
        raise InvalidParameterValueException("FunctionVersion must be ALL")
    configs = r.runtime.list_functions()
    if every_version:
        configs = [fc for latest in configs for fc in _versions_or_none(r.runtime, latest.function_name)]
    items = sorted((fc.to_dict() for fc in configs), key=_version_key)
    chunk, marker = page(items, r.query.get("Marker"), r.query.get("MaxItems"), _version_key)
    return Response(200, {"Functions": chunk, **({"NextMarker": marker} if marker else {})})


def _versions_or_none(runtime, name):
    from ..functions.errors import ResourceNotFoundException

    try:
        return runtime.list_versions_by_function(name)
    except ResourceNotFoundException:        # deleted between the two calls
        return []


@route("ListVersionsByFunction", "GET", "/2015-03-31/functions/{FunctionName}/versions")
def list_versions(r: Request) -> Response:
    items = [fc.to_dict() for fc in r.runtime.list_versions_by_function(r.params["FunctionName"])]
    chunk, marker = page(items, r.query.get("Marker"), r.query.get("MaxItems"), _version_key)
    return Response(200, {"Versions": chunk, **({"NextMarker": marker} if marker else {})})


@route("UpdateFunctionCode", "PUT", "/2015-03-31/functions/{FunctionName}/code", max_body=MAX_CODE_REQUEST,
       too_large=RequestEntityTooLargeException)
def update_function_code(r: Request) -> Response:
    body = Fields(parse_body(r.body))
    if body.bool("DryRun"):
        raise InvalidParameterValueException("DryRun is not supported by this server")
    architectures(body.list_of_str("Architectures"))
    revision = body.str("RevisionId")
    publish = body.bool("Publish") or False
    code = zip_bytes(Fields({k: v for k, v in body._data.items()
                             if k in ("ZipFile", "S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri")}), "")
    body.ignore("ZipFile", "S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri", "SourceKMSKeyArn")
    body.refuse_unknown()
    return Response(200, r.runtime.update_function_code(r.params["FunctionName"], code, publish=publish,
                                                        revision_id=revision).to_dict())


@route("UpdateFunctionConfiguration", "PUT", "/2015-03-31/functions/{FunctionName}/configuration")
def update_function_configuration(r: Request) -> Response:
    body = Fields(parse_body(r.body))
    revision = body.str("RevisionId")
    settings = _settings(body)
    body.refuse_unknown()
    return Response(200, r.runtime.update_function_configuration(r.params["FunctionName"], revision_id=revision,
                                                                 **settings).to_dict())


@route("PublishVersion", "POST", "/2015-03-31/functions/{FunctionName}/versions")
def publish_version(r: Request) -> Response:
    body = Fields(parse_body(r.body))
    sha, revision, description = body.str("CodeSha256"), body.str("RevisionId"), body.str("Description")
    body.refuse_unknown()
    return Response(201, r.runtime.publish_version(r.params["FunctionName"], description=description or "",
                                                   revision_id=revision, code_sha256=sha).to_dict())


@route("DeleteFunction", "DELETE", "/2015-03-31/functions/{FunctionName}")
def delete_function(r: Request) -> Response:
    r.runtime.delete_function(r.params["FunctionName"], qualifier=r.query.get("Qualifier"))
    return Response(204)


# -- layers --------------------------------------------------------------------------------
@route("PublishLayerVersion", "POST", "/2018-10-31/layers/{LayerName}/versions", max_body=MAX_CODE_REQUEST,
       too_large=RequestEntityTooLargeException)
def publish_layer_version(r: Request) -> Response:
    body = Fields(parse_body(r.body))
    content = zip_bytes(body.obj("Content", required=True), "Content.")
    runtimes = body.list_of_str("CompatibleRuntimes") or []
    architectures(body.list_of_str("CompatibleArchitectures"))
    description = body.str("Description") or ""
    body.refuse_unknown()
    layer = r.runtime.publish_layer_version(r.params["LayerName"], content, compatible_runtimes=runtimes,
                                            description=description)
    return Response(201, layer.to_dict())


def _layer_version(r: Request) -> int:
    number = r.params["VersionNumber"]
    if not number.isdigit():
        raise InvalidParameterValueException("VersionNumber must be an integer")
    return int(number)


@route("GetLayerVersion", "GET", "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}")
def get_layer_version(r: Request) -> Response:
    return Response(200, r.runtime.get_layer_version(r.params["LayerName"], _layer_version(r)).to_dict())


@route("ListLayerVersions", "GET", "/2018-10-31/layers/{LayerName}/versions")
def list_layer_versions(r: Request) -> Response:
    items = [layer.to_dict() for layer in r.runtime.list_layer_versions(r.params["LayerName"])]
    chunk, marker = page(items, r.query.get("Marker"), r.query.get("MaxItems"), lambda item: -item["Version"])
    return Response(200, {"LayerVersions": chunk, **({"NextMarker": marker} if marker else {})})


@route("DeleteLayerVersion", "DELETE", "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}")
def delete_layer_version(r: Request) -> Response:
    r.runtime.delete_layer_version(r.params["LayerName"], _layer_version(r))
    return Response(204)


# -- resource policy -----------------------------------------------------------------------
@route("AddPermission", "POST", "/2015-03-31/functions/{FunctionName}/policy")
def add_permission(r: Request) -> Response:
    body = Fields(parse_body(r.body))
    arguments = dict(statement_id=body.str("StatementId", required=True), action=body.str("Action", required=True),
                     principal=body.str("Principal", required=True), source_arn=body.str("SourceArn"),
                     source_account=body.str("SourceAccount"))
    revision = body.str("RevisionId")
    body.refuse_unknown()
    return Response(201, r.runtime.add_permission(r.params["FunctionName"], qualifier=r.query.get("Qualifier"),
                                                  revision_id=revision, **arguments))


@route("RemovePermission", "DELETE", "/2015-03-31/functions/{FunctionName}/policy/{StatementId}")
def remove_permission(r: Request) -> Response:
    r.runtime.remove_permission(r.params["FunctionName"], r.params["StatementId"], qualifier=r.query.get("Qualifier"),
                                revision_id=r.query.get("RevisionId"))
    return Response(204)


@route("GetPolicy", "GET", "/2015-03-31/functions/{FunctionName}/policy")
def get_policy(r: Request) -> Response:
    return Response(200, r.runtime.get_policy(r.params["FunctionName"], qualifier=r.query.get("Qualifier")))


# -- concurrency ---------------------------------------------------------------------------
@route("PutFunctionConcurrency", "PUT", "/2017-10-31/functions/{FunctionName}/concurrency")
def put_function_concurrency(r: Request) -> Response:
    body = Fields(parse_body(r.body))
    n = body.int("ReservedConcurrentExecutions", required=True)
    body.refuse_unknown()
    return Response(200, r.runtime.put_function_concurrency(r.params["FunctionName"], n))


@route("GetFunctionConcurrency", "GET", "/2019-09-30/functions/{FunctionName}/concurrency")
def get_function_concurrency(r: Request) -> Response:
    return Response(200, r.runtime.get_function_concurrency(r.params["FunctionName"]))


@route("DeleteFunctionConcurrency", "DELETE", "/2017-10-31/functions/{FunctionName}/concurrency")
def delete_function_concurrency(r: Request) -> Response:
    r.runtime.delete_function_concurrency(r.params["FunctionName"])
    return Response(204)


def _qualifier(r: Request) -> str:
    qualifier = r.query.get("Qualifier")
    if not qualifier:
        raise InvalidParameterValueException("Qualifier is required")
    return qualifier


@route("PutProvisionedConcurrencyConfig", "PUT", "/2019-09-30/functions/{FunctionName}/provisioned-concurrency")
def put_provisioned(r: Request) -> Response:
    body = Fields(parse_body(r.body))
    n = body.int("ProvisionedConcurrentExecutions", required=True)
    body.refuse_unknown()
    return Response(202, r.runtime.put_provisioned_concurrency_config(r.params["FunctionName"], _qualifier(r), n))


@route("GetProvisionedConcurrencyConfig", "GET", "/2019-09-30/functions/{FunctionName}/provisioned-concurrency")
def get_provisioned(r: Request) -> Response:
    return Response(200, r.runtime.get_provisioned_concurrency_config(r.params["FunctionName"], _qualifier(r)))


@route("DeleteProvisionedConcurrencyConfig", "DELETE",
       "/2019-09-30/functions/{FunctionName}/provisioned-concurrency")
def delete_provisioned(r: Request) -> Response:
    r.runtime.delete_provisioned_concurrency_config(r.params["FunctionName"], _qualifier(r))
    return Response(204)


# -- event invoke config -------------------------------------------------------------------
@route("PutFunctionEventInvokeConfig", "PUT", "/2019-09-25/functions/{FunctionName}/event-invoke-config")
def put_event_invoke_config(r: Request) -> Response:
    body = Fields(parse_body(r.body))
    arguments = {}
    for field_name, argument in (("MaximumRetryAttempts", "maximum_retry_attempts"),
                                 ("MaximumEventAgeInSeconds", "maximum_event_age_s")):
        value = body.int(field_name)
        if value is not None:
            arguments[argument] = value
    destinations = body.obj("DestinationConfig")
    if destinations is not None:
        arguments["on_success"] = destination(destinations.obj("OnSuccess"), r.destinations_dir, "OnSuccess")
        arguments["on_failure"] = destination(destinations.obj("OnFailure"), r.destinations_dir, "OnFailure")
        destinations.refuse_unknown()
    body.refuse_unknown()
    name, qualifier = r.params["FunctionName"], r.query.get("Qualifier")
    config = r.runtime.put_function_event_invoke_config(name, qualifier=qualifier, **arguments)
    return Response(200, event_config_dict(config, _arn(r.runtime, name, qualifier), time.time()))


@route("GetFunctionEventInvokeConfig", "GET", "/2019-09-25/functions/{FunctionName}/event-invoke-config")
def get_event_invoke_config(r: Request) -> Response:
    name, qualifier = r.params["FunctionName"], r.query.get("Qualifier")
    config = r.runtime.get_function_event_invoke_config(name, qualifier=qualifier)
    return Response(200, event_config_dict(config, _arn(r.runtime, name, qualifier), time.time()))


def _arn(runtime, name, qualifier) -> str:
    fc = runtime.get_function(name, qualifier=qualifier)
    return fc.to_dict()["FunctionArn"] if fc.version != "$LATEST" else fc.function_arn + ":$LATEST"
