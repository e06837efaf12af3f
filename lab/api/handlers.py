"""One handler for every resource URL: authorize, then dispatch on method and subresource.

Verbs (for the policy and for 405s): GET object = get, GET collection = list,
``watch=true`` = watch, POST = create, PUT = update, PATCH = patch, DELETE object =
delete, DELETE collection = deletecollection. Create answers 201, the rest 200.
:func:`request_verb`, :func:`read_body` and :func:`delete_collection` also serve
:mod:`lab.api.event_views`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lab.api import deletion, verbs
from lab.api.authz import Attributes, Policy
from lab.api.disruption import evict
from lab.api.fields import dig, meta
from lab.api.logs import pod_log
from lab.api.reads import bool_param, get_object, json_response, list_objects
from lab.api.routing import Target
from lab.api.state import State
from lab.api.status import bad_request, invalid, method_not_allowed
from lab.api.subresources import bind, get_scale, patch_scale, review, update_scale
from lab.api.validation import decode_body
from lab.api.views import View, present
from lab.api.watch import watch

__all__ = ["delete_collection", "dry_run_param", "handle_resource", "read_body", "request_verb"]

SSAR_KEY = "selfsubjectaccessreviews.authorization.k8s.io"
_OPTIONS_KIND = {
    "POST": "CreateOptions",
    "PUT": "UpdateOptions",
    "PATCH": "PatchOptions",
    "DELETE": "DeleteOptions",
}


def dry_run_param(method: str, values: list[str]) -> bool:
    """Whether a write is a dry run: ``dryRun`` may only be ``All`` (repeatable); anything else
    is the 422 kube-apiserver gives (``CreateOptions.meta.k8s.io "" is invalid: dryRun: ...``)."""
    if method not in _OPTIONS_KIND or not values:
        return False
    if any(value != "All" for value in values):
        shown = ", ".join(json.dumps(value, ensure_ascii=False) for value in values)
        problem = f'Unsupported value: []string{{{shown}}}: supported values: "All"'
        error = invalid(_OPTIONS_KIND[method], "", "dryRun", problem, "meta.k8s.io")
        for cause in (error.details or {}).get("causes", []):
            cause["reason"] = "FieldValueNotSupported"
        raise error
    return True


def request_verb(method: str, target: Target, watching: bool) -> str:
    """The verb a request is authorized as (get, list, watch, create, ..., deletecollection)."""
    if method == "GET":
        return "watch" if watching else "get" if target.name is not None else "list"
    if method == "DELETE":
        return "delete" if target.name is not None else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def _by(request: web.Request, patching: bool = False) -> dict[str, Any]:
    """Who writes: ``manager`` is ``fieldManager``, else the User-Agent up to its first ``/`` (as
    the real server; an apply must name it); a patch also gets ``force`` (server-side apply)."""
    manager = request.query.get("fieldManager")
    if manager is None and "apply-patch" in request.headers.get("Content-Type", ""):
        manager = ""
    elif manager is None:
        manager = request.headers.get("User-Agent", "").split("/", 1)[0][:128] or "unknown"
    if not patching:
        return {"manager": manager}
    return {"manager": manager, "force": bool_param(request.query, "force")}


async def read_body(request: web.Request, required: bool = True, null: str = "") -> Any:
    """The decoded body; None for an empty one unless ``required``; a JSON ``null`` is refused
    with the message ``null`` when one is given."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise bad_request("the request body is empty")
        return None
    body = decode_body(raw, request.headers.get("Content-Type", ""))
    if body is None and null:
        raise bad_request(null)
    return body


async def handle_resource(
    request: web.Request, state: State, policy: Policy, target: Target
) -> web.StreamResponse:
    method, query = request.method, request.query
    rt, ns, name, sub = target.rt, target.namespace or "", target.name, target.subresource
    watching = target.watch_prefix or (method == "GET" and bool_param(query, "watch"))
    policy.check(
        Attributes(request_verb(method, target, watching), rt.group, rt.plural, sub or "", ns, name or "")
    )
    dry_run = dry_run_param(method, query.getall("dryRun", []))
    if rt.key == SSAR_KEY:
        if method != "POST" or name is not None:
            raise method_not_allowed(method)
        raw = await request.read()
        return json_response(review(policy, raw, request.headers.get("Content-Type", "")), 201)
    if rt.key == "bindings":
        if method != "POST" or name is not None or target.namespace is None:
            raise method_not_allowed(method)
        body = await read_body(request)
        pod = dig(body, "metadata", "name")
        if not isinstance(pod, str) or not pod:
            raise bad_request("a Binding needs metadata.name: the pod to bind")
        return json_response(bind(state, state.registry.builtin("pods"), ns, pod, body), 201)
    if name is None:
        return await _collection(request, state, target, watching, dry_run)
    if sub is None:
        return await _object(request, state, target, watching, dry_run)
    if method == "GET" and sub == "status":
        return get_object(request, state, target)
    if sub == "status" and method == "PUT":
        return json_response(
            present(
                rt,
                verbs.update(
                    state, rt, ns, name, await read_body(request), "status", dry_run, **_by(request)
                ),
            )
        )
    if sub == "status" and method == "PATCH":
        ctype = request.headers.get("Content-Type", "")
        return json_response(
            present(
                rt,
                verbs.patch(
                    state, rt, ns, name, ctype, await request.read(), "status", dry_run, **_by(request, True)
                ),
            )
        )
    if sub == "scale" and method in ("GET", "PUT", "PATCH"):
        if method == "GET":
            return json_response(get_scale(state, rt, ns, name))
        if method == "PUT":
            return json_response(update_scale(state, rt, ns, name, await read_body(request), **_by(request)))
        ctype = request.headers.get("Content-Type", "")
        return json_response(patch_scale(state, rt, ns, name, ctype, await request.read(), **_by(request)))
    if sub == "log" and method == "GET":
        return await pod_log(request, state, target)
    if sub == "eviction" and method == "POST":
        body = await read_body(
            request, required=False, null="the Eviction body must be a JSON object, not null"
        )
        return json_response(evict(state, rt, ns, name, body), 201)
    if sub == "binding" and method == "POST":
        return json_response(bind(state, rt, ns, name, await read_body(request)), 201)
    raise method_not_allowed(method)


async def _collection(
    request: web.Request, state: State, target: Target, watching: bool, dry_run: bool
) -> web.StreamResponse:
    rt, method = target.rt, request.method
    if method == "GET":
        return await watch(request, state, target) if watching else list_objects(request, state, target)
    if method == "POST":
        if rt.namespaced and target.namespace is None:
            raise method_not_allowed(method)
        created = verbs.create(
            state, rt, target.namespace or "", await read_body(request), dry_run, **_by(request)
        )
        return json_response(present(rt, created), 201)
    if method == "DELETE":
        opts = deletion.parse_options(request.query, await read_body(request, required=False))
        return delete_collection(request, state, View(rt), target.namespace, opts)
    raise method_not_allowed(method)


def delete_collection(
    request: web.Request, state: State, view: View, namespace: str | None, opts: deletion.DeleteOptions
) -> web.Response:
    """DELETE of a collection: every object the request's selectors match, answered as a list of them."""
    labels, fields = view.selectors(request.query)
    gone = []
    for obj in list(state.store.scan(view.key, namespace)):
        md = meta(obj)
        if labels.matches(md.get("labels")) and fields.matches(obj):
            gone.append(view.show(obj))
            deletion.delete(state, view.stored, str(md.get("namespace") or ""), str(md.get("name")), opts)
    return json_response(
        {
            "kind": f"{view.rt.kind}List",
            "apiVersion": view.rt.api_version,
            "metadata": {"resourceVersion": str(state.store.rv)},
            "items": gone,
        }
    )


async def _object(
    request: web.Request, state: State, target: Target, watching: bool, dry_run: bool
) -> web.StreamResponse:
    rt, method, ns, name = target.rt, request.method, target.namespace or "", target.name or ""
    if method == "GET":
        return await watch(request, state, target) if watching else get_object(request, state, target)
    if method == "PUT":
        return json_response(
            present(
                rt, verbs.update(state, rt, ns, name, await read_body(request), None, dry_run, **_by(request))
            )
        )
    if method == "PATCH":
        ctype = request.headers.get("Content-Type", "")
        return json_response(
            present(
                rt,
                verbs.patch(
                    state, rt, ns, name, ctype, await request.read(), None, dry_run, **_by(request, True)
                ),
            )
        )
    if method == "DELETE":
        opts = deletion.parse_options(request.query, await read_body(request, required=False))
        opts.dry_run = opts.dry_run or dry_run
        result = deletion.delete(state, rt, ns, name, opts)
        return json_response(present(rt, result) if result.get("kind") != "Status" else result)
    raise method_not_allowed(method)
