"""Server-side printing: ``meta.k8s.io/v1`` Table and PartialObjectMetadata answers.

kubectl asks ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...``; the answer's
rows carry the cells of the kind's columns (:mod:`lab.api.printers`) and the object as
PartialObjectMetadata (``includeObject=Metadata``, the default), whole (``Object``)
or not at all (``None``). Custom resources print NAME, their CRD's
``additionalPrinterColumns`` (simple JSONPath; ``date`` columns as ages), and AGE when
no column shows the creation time; without printer columns, NAME and AGE.
"""

from __future__ import annotations

import json
import time
from typing import Any

from lab.api.columns import AGE, Column, name_column
from lab.api.fields import as_str, human_duration, meta, parse_time
from lab.api.jsonpath import evaluate
from lab.api.printers import PRINTERS
from lab.api.resources import ResourceType

__all__ = ["negotiate", "partial_metadata", "to_table"]


def negotiate(accept: str) -> tuple[str, str]:
    """What the client asks for: ("Table"|"PartialObjectMetadata"|"PartialObjectMetadataList"|"", version)."""
    for media in accept.split(","):
        params = {}
        for part in media.split(";")[1:]:
            key, _, value = part.partition("=")
            params[key.strip()] = value.strip()
        wanted = params.get("as", "")
        if params.get("g") == "meta.k8s.io" and wanted in (
            "Table",
            "PartialObjectMetadata",
            "PartialObjectMetadataList",
        ):
            return wanted, params.get("v", "v1") if params.get("v") in ("v1", "v1beta1") else "v1"
        if media.split(";")[0].strip() in ("application/json", "*/*", "application/*") and not wanted:
            return "", "v1"
    return "", "v1"


def partial_metadata(obj: dict[str, Any], version: str = "v1") -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}", "metadata": meta(obj)}


def _cell_text(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


def _custom_columns(rt: ResourceType) -> list[Column]:
    columns = [name_column()]
    shows_age = False
    for spec in rt.printer_columns:
        path, ctype = as_str(spec.get("jsonPath")), as_str(spec.get("type"), "string")
        if path.strip("{} ") == ".metadata.creationTimestamp":
            shows_age = True

        def cell(obj: dict[str, Any], now: float, path: str = path, ctype: str = ctype) -> Any:
            found = evaluate(path, obj)
            if not found:
                return None
            value = found[0]
            if ctype == "date":
                stamp = parse_time(value)
                return human_duration(now - stamp) if stamp is not None else value
            return _cell_text(value)

        priority = spec.get("priority")
        columns.append(
            Column(
                as_str(spec.get("name"), path),
                cell,
                ctype if ctype != "date" else "date",
                priority if isinstance(priority, int) and not isinstance(priority, bool) else 0,
                as_str(spec.get("format")),
                as_str(spec.get("description")),
            )
        )
    if not shows_age:
        columns.append(AGE)
    return columns


def columns_for(rt: ResourceType) -> list[Column]:
    if rt.custom:
        return _custom_columns(rt)
    return PRINTERS.get(rt.key, [name_column(), AGE])


def to_table(
    rt: ResourceType,
    objects: list[dict[str, Any]],
    resource_version: str,
    include: str = "Metadata",
    version: str = "v1",
    with_definitions: bool = True,
) -> dict[str, Any]:
    now = time.time()
    columns = columns_for(rt)
    rows = []
    for obj in objects:
        cells = []
        for column in columns:
            try:
                cells.append(column.cell(obj, now))
            except (TypeError, ValueError, KeyError, AttributeError, IndexError):
                cells.append(None)
        row: dict[str, Any] = {"cells": cells}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = partial_metadata(obj, version)
        rows.append(row)
    table: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [c.definition() for c in columns] if with_definitions else [],
        "rows": rows,
    }
    return table
