"""How a served resource reads its storage, so every resource is listed, got and watched one way.

A :class:`View` names the storage a resource reads (``stored``: its key, its Table columns),
how a stored object is shown (:meth:`View.show`), how a field selector is read
(:meth:`View.field_selector`) and how a Table is built (:meth:`View.table`). Most resources
are served as stored: ``View(rt)`` shows the objects of ``rt.key`` at ``rt``'s version
(:func:`present`; custom resources are stored once for all versions). A resource served
from another type's storage subclasses it: ``events.k8s.io/v1`` Events are the core v1
Events converted on the way out (:mod:`lab.api.event_views`). The list
(:func:`lab.api.reads.list_objects`), get (:func:`lab.api.reads.get_object`) and watch
(:func:`lab.api.watch.watch`) code paths take a view, so paging, ``remainingItemCount``,
bookmarks and 410s are the same for every resource.
"""

from __future__ import annotations

from typing import Any

from lab.api.resources import ResourceType
from lab.api.selectors import FieldSelector, LabelSelector
from lab.api.tables import to_table

__all__ = ["View", "present"]


def present(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as served at ``rt``'s version (custom resources are stored once for all versions)."""
    if obj.get("apiVersion") != rt.api_version or obj.get("kind") != rt.kind:
        obj = dict(obj)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
    return obj


class View:
    """A resource as served (``rt``: list kind, bookmarks, messages) over the storage of ``stored``.

    The base class serves ``rt`` as stored; subclasses override :meth:`show`,
    :meth:`field_selector` and :meth:`table` to serve another type's storage.
    """

    def __init__(self, rt: ResourceType, stored: ResourceType | None = None) -> None:
        self.rt = rt
        self.stored = rt if stored is None else stored
        self.key = self.stored.key

    def show(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A stored object as this resource serves it (not a copy when nothing changes)."""
        return present(self.rt, obj)

    def field_selector(self, text: str | None) -> FieldSelector:
        """The ``fieldSelector`` query parameter, over the stored objects."""
        return FieldSelector(text, self.key)

    def selectors(self, query: Any) -> tuple[LabelSelector, FieldSelector]:
        """The label and field selectors of a request's query."""
        return LabelSelector(query.get("labelSelector")), self.field_selector(query.get("fieldSelector"))

    def table(
        self, objects: list[dict[str, Any]], resource_version: str, include: str, version: str
    ) -> dict[str, Any]:
        """The ``meta.k8s.io`` Table of stored ``objects`` (rows carry them as shown)."""
        return to_table(self.rt, [self.show(o) for o in objects], resource_version, include, version)
