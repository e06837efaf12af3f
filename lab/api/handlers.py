"""One handler for every resource URL: authorize, then dispatch on method and subresource.

Verbs (for the policy and for 405s): GET object = get, GET collection = list,
``watch=true`` = watch, POST = create, PUT = update, PATCH = patch, DELETE object =
delete, DELETE collection = deletecollection. Create answers 201, the rest 200.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lab.api import deletion, verbs
from lab.api.authz import Attributes, Policy
from lab.api.disruption import evict
from lab.api.fields import dig, meta
from lab.api.logs import pod_log
from lab.api.reads import bool_param, get_object, json_response, list_objects, present, selection
from lab.api.routing import Target
from lab.api.state import State
from lab.api.status import bad_request, method_not_allowed
from lab.api.subresources import bind, get_scale, patch_scale, review, update_scale
from lab.api.validation import decode_body
from lab.api.watch import watch

__all__ = ["handle_resource"]

SSAR_KEY = "selfsubjectaccessreviews.authorization.k8s.io"


def _verb(method: str, target: Target, watching: bool) -> str:
    if method == "GET":
        return "watch" if watching else "get" if target.name is not None else "list"
    if method == "DELETE":
        return "delete" if target.name is not None else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


async def _body(request: web.Request, required: bool = True, null: str = "") -> Any:
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
    policy.check(Attributes(_verb(method, target, watching), rt.group, rt.plural, sub or "", ns, name or ""))
    dry_run = bool(query.get("dryRun"))
    if rt.key == SSAR_KEY:
        if method != "POST" or name is not None:
            raise method_not_allowed(method)
        raw = await request.read()
        return json_response(review(policy, raw, request.headers.get("Content-Type", "")), 201)
    if rt.key == "bindings":
        if method != "POST" or name is not None or target.namespace is None:
            raise method_not_allowed(method)
        body = await _body(request)
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
            present(rt, verbs.update(state, rt, ns, name, await _body(request), "status", dry_run))
        )
    if sub == "status" and method == "PATCH":
        ctype = request.headers.get("Content-Type", "")
        return json_response(
            present(rt, verbs.patch(state, rt, ns, name, ctype, await request.read(), "status", dry_run))
        )
    if sub == "scale" and method in ("GET", "PUT", "PATCH"):
        if method == "GET":
            return json_response(get_scale(state, rt, ns, name))
        if method == "PUT":
            return json_response(update_scale(state, rt, ns, name, await _body(request)))
        return json_response(
            patch_scale(state, rt, ns, name, request.headers.get("Content-Type", ""), await request.read())
        )
    if sub == "log" and method == "GET":
        return await pod_log(request, state, target)
    if sub == "eviction" and method == "POST":
        body = await _body(request, required=False, null="the Eviction body must be a JSON object, not null")
        return json_response(evict(state, rt, ns, name, body), 201)
    if sub == "binding" and method == "POST":
        return json_response(bind(state, rt, ns, name, await _body(request)), 201)
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
        created = verbs.create(state, rt, target.namespace or "", await _body(request), dry_run)
        return json_response(present(rt, created), 201)
    if method == "DELETE":
        labels, fields = selection(request, target)
        opts = deletion.parse_options(request.query, await _body(request, required=False))
        gone = []
        for obj in list(state.store.scan(rt.key, target.namespace)):
            md = meta(obj)
            if labels.matches(md.get("labels")) and fields.matches(obj):
                gone.append(present(rt, obj))
                deletion.delete(state, rt, str(md.get("namespace") or ""), str(md.get("name")), opts)
        return json_response(
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(state.store.rv)},
                "items": gone,
            }
        )
    raise method_not_allowed(method)


async def _object(
    request: web.Request, state: State, target: Target, watching: bool, dry_run: bool
) -> web.StreamResponse:
    rt, method, ns, name = target.rt, request.method, target.namespace or "", target.name or ""
    if method == "GET":
        return await watch(request, state, target) if watching else get_object(request, state, target)
    if method == "PUT":
        return json_response(
            present(rt, verbs.update(state, rt, ns, name, await _body(request), None, dry_run))
        )
    if method == "PATCH":
        ctype = request.headers.get("Content-Type", "")
        return json_response(
            present(rt, verbs.patch(state, rt, ns, name, ctype, await request.read(), None, dry_run))
        )
    if method == "DELETE":
        opts = deletion.parse_options(request.query, await _body(request, required=False))
        opts.dry_run = opts.dry_run or dry_run
        result = deletion.delete(state, rt, ns, name, opts)
        return json_response(present(rt, result) if result.get("kind") != "Status" else result)
    raise method_not_allowed(method)
