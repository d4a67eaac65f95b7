"""Validate HTTP responses against the Matrix spec's OpenAPI definitions.

The spec ships one OpenAPI 3.1 document per API area under ``data/api``. Each document
declares a ``basePath`` (e.g. ``/_matrix/client/v3``) and relative paths (``/login``), so
we index every operation by its full path. Response schemas are plain JSON Schema
(2020-12) with relative ``$ref``s into sibling files, ``data/schemas`` and
``data/event-schemas``; the ``referencing`` library resolves those lazily from disk,
keyed by ``file://`` URIs so relative refs work exactly as they do in the spec build.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import jsonschema
import referencing
import referencing.jsonschema
import yaml

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_PARAM = re.compile(r"\{[^}/]+\}")
_MAX_REPORTED_ERRORS = 5


class SpecError(Exception):
    """The spec itself could not be found or does not describe the request."""


class SchemaViolation(AssertionError):
    """A response body does not match the spec; the message names the JSON paths."""


def spec_dir() -> Path:
    """Where the matrix-spec checkout lives: $MATRIX_SPEC_DIR or ../shared/matrix-spec."""
    override = os.environ.get("MATRIX_SPEC_DIR")
    if override:
        return Path(override).resolve()
    project_root = Path(__file__).resolve().parent.parent
    return (project_root.parent / "shared" / "matrix-spec").resolve()


def normalise_template(path: str) -> str:
    """Make path templates comparable whatever their parameter names: ``{roomId}`` -> ``{}``."""
    return _PARAM.sub("{}", path.rstrip("/") or "/")


@dataclass(frozen=True)
class Operation:
    """Where one (method, path) operation is defined in the spec."""

    method: str
    full_path: str
    file: Path
    pointer: str  # JSON pointer to the operation object inside ``file``

    @property
    def uri(self) -> str:
        return self.file.as_uri()


def _pointer_escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _base_path(document: dict[str, Any]) -> str:
    for server in document.get("servers") or []:
        variables = server.get("variables") or {}
        if "basePath" in variables:
            return str(variables["basePath"].get("default", ""))
    return ""


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


class Spec:
    """An index of every operation in ``data/api`` plus a lazily filled schema registry."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.api_dir = root / "data" / "api"
        if not self.api_dir.is_dir():
            raise SpecError(
                f"Matrix spec not found at {root} (expected data/api inside it); "
                "set MATRIX_SPEC_DIR to a matrix-spec checkout"
            )
        self._documents: dict[Path, Any] = {}
        self.operations: dict[tuple[str, str], list[Operation]] = {}
        for path in sorted(self.api_dir.glob("*/*.yaml")):
            self._index_document(path)
        self.registry: referencing.Registry = referencing.Registry(retrieve=self._retrieve)

    def _document(self, path: Path) -> Any:
        if path not in self._documents:
            self._documents[path] = _load_yaml(path)
        return self._documents[path]

    def _index_document(self, path: Path) -> None:
        document = self._document(path)
        if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
            return
        base = _base_path(document)
        for relative, item in document["paths"].items():
            for method in _METHODS:
                if method not in (item or {}):
                    continue
                full = base + relative
                key = (method, normalise_template(full))
                pointer = f"/paths/{_pointer_escape(relative)}/{method}"
                self.operations.setdefault(key, []).append(Operation(method, full, path, pointer))

    def _retrieve(self, uri: str) -> referencing.Resource:
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise referencing.exceptions.NoSuchResource(ref=uri)
        path = Path(url2pathname(parts.path))
        try:
            if path.suffix in (".yaml", ".yml"):
                contents = self._document(path)
            else:
                contents = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise referencing.exceptions.NoSuchResource(ref=uri) from exc
        return referencing.Resource.from_contents(
            contents, default_specification=referencing.jsonschema.DRAFT202012
        )

    def operation(self, method: str, path_template: str) -> Operation:
        key = (method.lower(), normalise_template(path_template))
        found = self.operations.get(key)
        if not found:
            raise SpecError(f"the spec has no operation {method.upper()} {path_template}")
        if len(found) > 1:
            files = ", ".join(str(op.file.relative_to(self.api_dir)) for op in found)
            raise SpecError(f"{method.upper()} {path_template} is ambiguous: defined in {files}")
        return found[0]

    def _follow(self, uri: str, node: Any) -> tuple[str, Any]:
        """Follow an OpenAPI-level ``$ref`` (e.g. a shared response object) to its target."""
        seen = set()
        while isinstance(node, dict) and "$ref" in node:
            target = urljoin(uri, node["$ref"])
            if target in seen:
                raise SpecError(f"$ref cycle at {target}")
            seen.add(target)
            resolved = self.registry.resolver().lookup(target)
            uri, node = target, resolved.contents
        return uri, node

    def response_schema_uri(self, method: str, path_template: str, status: int) -> str | None:
        """The ``file://...#/pointer`` of the JSON response schema, or None if it has no body.

        Raises SpecError when the status is not documented for the operation.
        """
        op = self.operation(method, path_template)
        document = self._document(op.file)
        operation = _walk(document, op.pointer)
        responses = operation.get("responses") or {}
        code = _pick_status(responses, status)
        if code is None:
            documented = ", ".join(str(k) for k in responses)
            raise SpecError(
                f"status {status} is not documented for {method.upper()} {op.full_path} "
                f"(documented: {documented})"
            )
        response_pointer = f"{op.pointer}/responses/{_pointer_escape(str(code))}"
        uri, response = self._follow(f"{op.uri}#{response_pointer}", responses[code])
        content = (response or {}).get("content") or {}
        media = content.get("application/json")
        if media is None or "schema" not in media:
            return None
        base, _, fragment = uri.partition("#")
        return f"{base}#{fragment}/content/application~1json/schema"

    def validator_for_uri(self, schema_uri: str) -> jsonschema.protocols.Validator:
        return jsonschema.Draft202012Validator({"$ref": schema_uri}, registry=self.registry)

    def validator_for_file(self, relative: str) -> jsonschema.protocols.Validator:
        """A validator for a whole schema file, relative to ``data/`` (e.g. an error schema)."""
        path = (self.root / "data" / relative).resolve()
        if not path.is_file():
            raise SpecError(f"no schema file {path}")
        return self.validator_for_uri(path.as_uri())


def _walk(document: Any, pointer: str) -> Any:
    node = document
    for token in pointer.lstrip("/").split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def _pick_status(responses: dict[Any, Any], status: int) -> Any:
    """Exact code first, then the OpenAPI range form ``4XX``, then ``default``."""
    for candidate in (str(status), status, f"{status // 100}XX", "default"):
        if candidate in responses:
            return candidate
    return None


def format_errors(errors: list[jsonschema.ValidationError]) -> str:
    """One line per violation, each led by the JSON path of the offending value."""
    errors = sorted(errors, key=lambda e: (list(map(str, e.absolute_path)), e.message))
    lines = [f"{error.json_path}: {error.message}" for error in errors[:_MAX_REPORTED_ERRORS]]
    if len(errors) > _MAX_REPORTED_ERRORS:
        lines.append(f"... and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(lines)


def check(validator: jsonschema.protocols.Validator, body: Any, what: str) -> None:
    errors = list(validator.iter_errors(body))
    if errors:
        raise SchemaViolation(f"{what} does not match the spec: {format_errors(errors)}")


def load_spec(root: Path | None = None) -> Spec:
    """The parsed spec at ``root`` (default: spec_dir()), parsed once per directory."""
    return _cached_spec((root or spec_dir()).resolve())


@functools.lru_cache(maxsize=4)
def _cached_spec(root: Path) -> Spec:
    return Spec(root)


def validate_response(method: str, path_template: str, status: int, body: Any) -> None:
    """Raise SchemaViolation unless ``body`` matches the spec's schema for this response.

    ``path_template`` is the full path as served, e.g. ``/_matrix/client/v3/rooms/{roomId}/state``;
    parameter names need not match the spec's. A documented response without a JSON body
    accepts anything; an undocumented status raises SpecError.
    """
    spec = load_spec()
    schema_uri = spec.response_schema_uri(method, path_template, status)
    if schema_uri is None:
        return
    check(spec.validator_for_uri(schema_uri), body, f"{method.upper()} {path_template} {status}")


def validate_against_file(relative: str, body: Any) -> None:
    """Validate ``body`` against a schema file under ``data/``, e.g. the standard error shape."""
    check(load_spec().validator_for_file(relative), body, relative)
