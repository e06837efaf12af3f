"""Generate :mod:`lab.api.protobuf_schema` from Kubernetes' own sources (a maintainer's tool).

Reads the ``generated.proto`` files of ``k8s.io/api`` and ``k8s.io/apimachinery`` for the
messages (field numbers and types), and the Go ``types.go`` next to them for how each
field is written as JSON (its JSON name, whether it is a pointer, ``omitempty``), then
writes a compact table of the messages reachable from :data:`ROOTS` (the kinds the lab
serves). Either a checkout or a git directory with ``--ref`` works::

    python -m lab.api.protobuf_gen --api ../api --apimachinery ../apimachinery \\
        --ref v0.32.4 --out lab/api/protobuf_schema.py
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROOTS", "generate", "main"]

API_PACKAGES = (
    "core/v1",
    "apps/v1",
    "batch/v1",
    "policy/v1",
    "rbac/v1",
    "storage/v1",
    "coordination/v1",
    "authorization/v1",
    "autoscaling/v1",
    "discovery/v1",
    "events/v1",
)
MACHINERY_PACKAGES = (
    "pkg/apis/meta/v1",
    "pkg/runtime",
    "pkg/runtime/schema",
    "pkg/api/resource",
    "pkg/util/intstr",
)
ROOTS: dict[str, str] = {
    **{
        f"v1 {kind}": f"core.v1.{kind}"
        for kind in (
            "Namespace",
            "Node",
            "Pod",
            "Binding",
            "Service",
            "Secret",
            "ConfigMap",
            "PersistentVolumeClaim",
            "Event",
            "ServiceAccount",
            "PersistentVolume",
            "Endpoints",
        )
    },
    **{
        f"apps/v1 {k}": f"apps.v1.{k}"
        for k in ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "ControllerRevision")
    },
    "discovery.k8s.io/v1 EndpointSlice": "discovery.v1.EndpointSlice",
    "events.k8s.io/v1 Event": "events.v1.Event",
    "batch/v1 Job": "batch.v1.Job",
    "batch/v1 CronJob": "batch.v1.CronJob",
    "policy/v1 PodDisruptionBudget": "policy.v1.PodDisruptionBudget",
    "policy/v1 Eviction": "policy.v1.Eviction",
    "storage.k8s.io/v1 StorageClass": "storage.v1.StorageClass",
    **{
        f"rbac.authorization.k8s.io/v1 {k}": f"rbac.v1.{k}"
        for k in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
    },
    "coordination.k8s.io/v1 Lease": "coordination.v1.Lease",
    "authorization.k8s.io/v1 SelfSubjectAccessReview": "authorization.v1.SelfSubjectAccessReview",
    "autoscaling/v1 Scale": "autoscaling.v1.Scale",
    "v1 DeleteOptions": "meta.v1.DeleteOptions",
    "meta.k8s.io/v1 DeleteOptions": "meta.v1.DeleteOptions",
}
_SCALARS = {"string", "bool", "bytes", "int32", "int64", "uint32", "uint64", "double", "float"}
_FIELD = re.compile(r"^\s*(optional|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;")
_MAP = re.compile(r"^\s*map<\s*(\w+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;")
_GO_FIELD = re.compile(r"^\s*(\w+)\s+(\S+)\s+`([^`]*)`")
_GO_STRUCT = re.compile(r"^type\s+(\w+)\s+struct\s*{")


@dataclass(frozen=True)
class Field:
    json: str
    type: str
    flags: str


def short(name: str) -> str:
    """``k8s.io.api.apps.v1.Deployment`` -> ``apps.v1.Deployment`` (and the machinery packages)."""
    name = name.lstrip(".")
    for prefix in ("k8s.io.api.", "k8s.io.apimachinery.pkg."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    for long, brief in (("apis.meta.", "meta."), ("api.resource.", "resource."), ("util.intstr.", "intstr.")):
        if name.startswith(long):
            name = brief + name[len(long) :]
    return name.replace("runtime.schema.", "schema.")


class Source:
    """Files of one repository: a checkout, or a git directory read at ``ref``."""

    def __init__(self, root: Path, ref: str) -> None:
        self.root, self.ref = root, ref
        self.git = ref != "" and not (root / "go.mod").exists()

    def read(self, path: str) -> str:
        if not self.git:
            file = self.root / path
            return file.read_text() if file.exists() else ""
        done = subprocess.run(
            ["git", "--git-dir", str(self.root), "show", f"{self.ref}:{path}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout if done.returncode == 0 else ""

    def go_files(self, package: str) -> list[str]:
        if not self.git:
            return [p.read_text() for p in sorted((self.root / package).glob("*.go"))]
        done = subprocess.run(
            ["git", "--git-dir", str(self.root), "ls-tree", "--name-only", f"{self.ref}:{package}"],
            capture_output=True,
            text=True,
            check=True,
        )
        names = [n for n in done.stdout.split() if n.endswith(".go") and not n.endswith("_test.go")]
        return [self.read(f"{package}/{n}") for n in names]


def parse_proto(text: str) -> dict[str, dict[int, tuple[str, str, str]]]:
    """Messages of one generated.proto: full name -> number -> (proto name, type, "r"|"m"|"")."""
    package = re.search(r"^package\s+([\w.]+);", text, re.M)
    if package is None:
        raise ValueError("a generated.proto without a package line")
    out: dict[str, dict[int, tuple[str, str, str]]] = {}
    current: dict[int, tuple[str, str, str]] | None = None
    for line in text.splitlines():
        if line.startswith("message "):
            current = out.setdefault(f"{package.group(1)}.{line.split()[1]}", {})
        elif line.startswith("}"):
            current = None
        elif current is not None and (m := _MAP.match(line)):
            current[int(m.group(4))] = (m.group(3), _qualify(m.group(2), package.group(1)), "m")
        elif current is not None and (m := _FIELD.match(line)):
            kind = "r" if m.group(1) == "repeated" else ""
            current[int(m.group(4))] = (m.group(3), _qualify(m.group(2), package.group(1)), kind)
    return out


def _qualify(type_name: str, package: str) -> str:
    if type_name in _SCALARS:
        return type_name
    return short(type_name if type_name.startswith(".") else f"{package}.{type_name}")


def parse_go(texts: list[str], package: str) -> dict[tuple[str, int], tuple[str, bool, bool]]:
    """(message, field number) -> (JSON name, Go pointer, omitempty) from Go struct tags."""
    out: dict[tuple[str, int], tuple[str, bool, bool]] = {}
    for text in texts:
        struct = ""
        for line in text.splitlines():
            if m := _GO_STRUCT.match(line):
                struct = m.group(1)
            elif line.startswith("}"):
                struct = ""
            elif struct and (m := _GO_FIELD.match(line)):
                tags = m.group(3)
                pb = re.search(r'protobuf:"\w+,(\d+),', tags)
                js = re.search(r'json:"([^"]*)"', tags)
                if pb and js:
                    json_name, _, options = js.group(1).partition(",")
                    out[(f"{package}.{struct}", int(pb.group(1)))] = (
                        json_name,
                        m.group(2).startswith("*"),
                        "omitempty" in options,
                    )
    return out


def generate(api: Source, machinery: Source) -> tuple[dict[str, dict[int, Field]], str]:
    """The messages reachable from :data:`ROOTS` and the generated module's text."""
    protos: dict[str, dict[int, tuple[str, str, str]]] = {}
    go: dict[tuple[str, int], tuple[str, bool, bool]] = {}
    for source, packages, prefix in ((api, API_PACKAGES, "k8s.io.api."), (machinery, MACHINERY_PACKAGES, "")):
        for package in packages:
            text = source.read(f"{package}/generated.proto")
            if not text:
                raise SystemExit(f"{package}/generated.proto not found in {source.root}: check --ref")
            parsed = parse_proto(text)
            protos.update({short(k): v for k, v in parsed.items()})
            pkg_name = short(prefix + package.replace("/", ".").replace("pkg.", "", 1))
            go.update(parse_go(source.go_files(package), pkg_name))
    wanted: dict[str, dict[int, Field]] = {}
    todo = list(ROOTS.values())
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        if name not in protos:
            raise SystemExit(f"message {name} not found in the proto files")
        fields: dict[int, Field] = {}
        for number, (proto_name, type_name, kind) in sorted(protos[name].items()):
            json_name, pointer, omitempty = go.get((name, number), (proto_name, False, True))
            flags = kind + ("p" if pointer else "") + ("o" if omitempty else "")
            fields[number] = Field(json_name or proto_name, type_name, flags)
            if type_name not in _SCALARS:
                todo.append(type_name)
        wanted[name] = fields
    return wanted, render(wanted, api.ref or "a checkout")


def render(messages: dict[str, dict[int, Field]], ref: str) -> str:
    lines = [
        '"""Kubernetes protobuf messages the lab API server decodes (generated; do not edit).',
        "",
        "Generated by ``python -m lab.api.protobuf_gen`` from the ``generated.proto`` and",
        f"``types.go`` files of k8s.io/api and k8s.io/apimachinery at {ref}:",
        "Copyright The Kubernetes Authors, licensed under the Apache License, Version 2.0",
        '(http://www.apache.org/licenses/LICENSE-2.0); distributed on an "AS IS" BASIS,',
        "WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND.",
        "",
        "``KINDS``: ``'<apiVersion> <kind>'`` -> message. ``MESSAGES``: message -> field",
        "number -> (JSON name, type: a scalar or a message, flags: ``r`` repeated, ``m`` map",
        "(the type is the value's), ``p`` a Go pointer, ``o`` omitempty).",
        '"""',
        "",
        "# fmt: off",
        "# ruff: noqa: E501",
        "",
        '__all__ = ["KINDS", "MESSAGES"]',
        "",
        "KINDS: dict[str, str] = {",
        *(f"    {k!r}: {v!r}," for k, v in sorted(ROOTS.items())),
        "}",
        "MESSAGES: dict[str, dict[int, tuple[str, str, str]]] = {",
    ]
    for name in sorted(messages):
        body = ", ".join(f"{n}: ({f.json!r}, {f.type!r}, {f.flags!r})" for n, f in messages[name].items())
        lines.append(f"    {name!r}: {{{body}}},")
    lines += ["}", "# fmt: on", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.api.protobuf_gen", description=__doc__)
    parser.add_argument("--api", type=Path, required=True, help="k8s.io/api checkout or git directory")
    parser.add_argument("--apimachinery", type=Path, required=True, help="k8s.io/apimachinery likewise")
    parser.add_argument("--ref", default="", help="tag to read from git directories, e.g. v0.32.4")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("protobuf_schema.py"))
    args = parser.parse_args(argv)
    messages, text = generate(Source(args.api, args.ref), Source(args.apimachinery, args.ref))
    args.out.write_text(text)
    print(f"{len(messages)} messages -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
