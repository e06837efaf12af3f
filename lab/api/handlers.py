"""One handler for every resource URL: authorize, then dispatch on method and subresource.

Verbs (for the authorizer and for 405s): GET object = get, GET collection = list,
``watch=true`` = watch, POST = create, PUT = update, PATCH = patch, DELETE object =
delete, DELETE collection = deletecollection. Create answers 201, the rest 200.
Every request is authorized first (:func:`request_attributes`, the request's user from
:func:`lab.api.identity.user_of`), as kube-apiserver's RequestInfo describes it: a
namespace's own URL is in that namespace, and a list or watch whose field selector
names one object (``metadata.name=x``) carries that name, so a rule with
``resourceNames`` can allow it. Writes of Roles, ClusterRoles and their bindings are
then checked for privilege escalation (:mod:`lab.api.rbac_writes`, on a dry run of the
same write), and a pod about to be created (by anyone but the controllers; also by a
server-side apply that creates it; such an apply also needs ``create``, as in
kube-apiserver) passes the pod security admission of :mod:`lab.api.pod_security`, as does
the pod template of a workload being written. ``authorization.k8s.io``
reviews are :mod:`lab.api.access_reviews`.
:func:`request_verb`, :func:`request_attributes`, :func:`read_body` and
:func:`delete_collection` also serve :mod:`lab.api.event_views`.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from aiohttp import web

from lab.api import access_reviews, deletion, pod_security, verbs
from lab.api.apply import APPLY_PATCH
from lab.api.authz import Attributes, Authorizer
from lab.api.disruption import evict
from lab.api.fields import clone, dig, meta
from lab.api.identity import MASTERS, UserInfo, user_of
from lab.api.logs import pod_log
from lab.api.rbac_writes import confirm_rbac_write, is_rbac_write
from lab.api.reads import bool_param, get_object, json_response, list_objects
from lab.api.routing import Target
from lab.api.state import State
from lab.api.status import bad_request, invalid, method_not_allowed
from lab.api.subresources import bind, get_scale, patch_scale, update_scale
from lab.api.validation import decode_body
from lab.api.views import View, present
from lab.api.watch import watch

__all__ = [
    "delete_collection",
    "dry_run_param",
    "handle_resource",
    "read_body",
    "request_attributes",
    "request_verb",
]

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


def _selector_name(text: str | None) -> str:
    """The name a field selector requires exactly (``metadata.name=x`` or ``==x``), or ""."""
    for raw in re.split(r"(?<!\\),", text or ""):
        m = re.match(r"^\s*metadata\.name\s*(==|=)(.*)$", raw)
        if m:
            name = re.sub(r"\\(.)", r"\1", m.group(2).strip())
            valid = name not in (".", "..") and "/" not in name and "%" not in name
            return name if valid else ""
    return ""


def request_attributes(request: web.Request, target: Target, watching: bool) -> Attributes:
    """What a resource request asks the authorizer (kube-apiserver's RequestInfo)."""
    verb = request_verb(request.method, target, watching)
    rt, name = target.rt, target.name or ""
    namespace = target.namespace or ""
    if rt.key == "namespaces" and name:
        namespace = name  # /api/v1/namespaces/x is in namespace x, as Kubernetes reads it
    if not name and verb in ("list", "watch"):
        name = _selector_name(request.query.get("fieldSelector"))
    return Attributes(user_of(request), verb, rt.group, rt.plural, target.subresource or "", namespace, name)


def _apply_creates(request: web.Request, state: State, target: Target) -> bool:
    """Whether the request is a server-side apply of an object that does not exist yet."""
    if request.method != "PATCH" or target.name is None or target.subresource is not None:
        return False
    media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return (
        media == APPLY_PATCH and state.store.peek(target.rt.key, target.namespace or "", target.name) is None
    )


def _admit_pod(pod: dict[str, Any], user: UserInfo, authorizer: Authorizer) -> None:
    """Pod security admission of ``pod``, the object the create would store (validated and
    defaulted: as in kube-apiserver, validating admission sees a valid object)."""
    pod_security.admit(pod, user, authorizer)


async def _would_store(request: web.Request, state: State, target: Target) -> dict[str, Any] | None:
    """The object a create, update or patch of ``target`` would store, by a dry run of the same
    write (validated and defaulted); None when the URL serves no such write (dispatch answers it)."""
    rt, ns, name, method = target.rt, target.namespace or "", target.name, request.method
    if (method == "POST") != (name is None) or (rt.namespaced and target.namespace is None):
        return None
    if method == "POST":
        created: dict[str, Any] = verbs.create(
            state, rt, ns, clone(await read_body(request)), True, **_by(request)
        )
        return created
    if method == "PUT":
        updated: dict[str, Any] = verbs.update(
            state, rt, ns, name or "", await read_body(request), None, True, **_by(request)
        )
        return updated
    ctype, raw = request.headers.get("Content-Type", ""), await request.read()
    patched: dict[str, Any] = verbs.patch(
        state, rt, ns, name or "", ctype, raw, None, True, **_by(request, True)
    )
    return patched


async def _admit_template(
    request: web.Request, state: State, authorizer: Authorizer, target: Target, user: UserInfo
) -> None:
    """A workload's pod template is admitted as a pod (:func:`lab.api.pod_security.admit_template`)."""
    new = await _would_store(request, state, target)
    if new is not None:
        pod_security.admit_template(new, target.rt.key, user, authorizer)


async def _confirm_rbac_write(
    request: web.Request, state: State, authorizer: Authorizer, target: Target, user: UserInfo
) -> None:
    """Refuse a write of an RBAC object that would grant more than ``user`` holds."""
    rt, ns, name = target.rt, target.namespace or "", target.name
    old = state.store.get(rt.key, ns, name) if name else None
    new = await _would_store(request, state, target)
    if new is not None:
        confirm_rbac_write(authorizer, user, rt, ns, name or "", new, old)


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
    request: web.Request, state: State, authorizer: Authorizer, target: Target
) -> web.StreamResponse:
    """Authorize the request with ``authorizer``, then serve it."""
    method, query = request.method, request.query
    rt, ns, name, sub = target.rt, target.namespace or "", target.name, target.subresource
    watching = target.watch_prefix or (method == "GET" and bool_param(query, "watch"))
    attrs = request_attributes(request, target, watching)
    authorizer.check(attrs)
    user = attrs.user
    if _apply_creates(request, state, target):
        authorizer.check(replace(attrs, verb="create"))  # as kube-apiserver: an apply that creates
    dry_run = dry_run_param(method, query.getall("dryRun", []))
    if rt.group == access_reviews.GROUP:
        return await access_reviews.handle(request, authorizer, target)
    if is_rbac_write(rt, method, sub) and MASTERS not in user.groups:
        await _confirm_rbac_write(request, state, authorizer, target, user)
    if rt.key in pod_security.TEMPLATES and sub is None and method in ("POST", "PUT", "PATCH"):
        await _admit_template(request, state, authorizer, target, user)
    if rt.key == "pods" and sub is None and method in ("POST", "PATCH"):
        return await _pod_write(request, state, authorizer, target, user, dry_run)
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


async def _pod_write(
    request: web.Request,
    state: State,
    authorizer: Authorizer,
    target: Target,
    user: UserInfo,
    dry_run: bool,
) -> web.StreamResponse:
    """POST or PATCH of a pod: a pod about to be created passes pod security admission first."""
    rt, ns, name = target.rt, target.namespace or "", target.name
    if request.method == "POST" and name is None and target.namespace is not None:
        body = await read_body(request)
        # a dry run of the same create: validation errors come first, as they would
        _admit_pod(verbs.create(state, rt, ns, clone(body), True, **_by(request)), user, authorizer)
        return await _collection(request, state, target, False, dry_run, body)
    if _apply_creates(request, state, target):
        ctype, raw = request.headers.get("Content-Type", ""), await request.read()
        preview = verbs.patch(state, rt, ns, name or "", ctype, raw, None, True, **_by(request, True))
        _admit_pod(preview, user, authorizer)
    if name is None:
        return await _collection(request, state, target, False, dry_run)
    return await _object(request, state, target, False, dry_run)


async def _collection(
    request: web.Request,
    state: State,
    target: Target,
    watching: bool,
    dry_run: bool,
    body: Any = None,
) -> web.StreamResponse:
    """GET, POST or DELETE of a collection (``body``: a POST's body when already read)."""
    rt, method = target.rt, request.method
    if method == "GET":
        return await watch(request, state, target) if watching else list_objects(request, state, target)
    if method == "POST":
        if rt.namespaced and target.namespace is None:
            raise method_not_allowed(method)
        if body is None:
            body = await read_body(request)
        created = verbs.create(state, rt, target.namespace or "", body, dry_run, **_by(request))
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
