#!/usr/bin/env python3
"""Offline check of the Kubernetes manifests in deploy/k8s/.

Renders every kustomization there with the real kustomize (`kustomize build`,
or the copy built into `kubectl kustomize`), then:
- validates every built-in object with kubernetes-validate (strict: unknown
  fields fail) against the oldest and newest Kubernetes the manifests support;
- validates every custom resource against its CRD's openAPIV3Schema vendored
  in tests/deploy/schemas/, made strict the same way (a CRD prunes unknown
  fields silently, so a misspelt field would otherwise pass), and its metadata
  as ObjectMeta;
- cross-checks the objects with herald itself: HERALD__* variables and the
  mounted TOML name real keys of config/herald.toml, the worker's grace period
  outlasts worker.shutdown_timeout, probes hit routes every role serves on the
  port api.listen binds, KEDA watches <amqp.prefix>.events and .deliveries on
  the broker herald uses, the PrometheusRule is deploy/prometheus/alerts.yml,
  the ServiceMonitor yields the job the alerts watch, every pod is hardened,
  and Services, PodDisruptionBudgets and references find what they name;
- breaks a few objects on purpose (a misspelt ScaledObject field, a wrong probe
  path, runAsNonRoot false, ...) and checks that each break is caught.

One line per thing verified; any failure names the file and the problem and
makes the exit status 1. `--write-rules` regenerates
deploy/k8s/base/prometheusrule.yaml from deploy/prometheus/alerts.yml."""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import yaml

from report import ROOT, Report

K8S = ROOT / "deploy" / "k8s"
CONFIG = ROOT / "config" / "herald.toml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_FILE = K8S / "base" / "prometheusrule.yaml"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
API_ROUTES_SRC = ROOT / "src" / "api" / "mod.rs"

# The oldest Kubernetes the manifests claim (preStop `sleep` is on by default
# from 1.30) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

# The custom resources used, and their vendored schemas (see schemas/README.md).
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_v1alpha1_triggerauthentication.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): "rabbitmq.com_v1beta1_rabbitmqcluster.json",
}

# KEDA's rabbitmq scaler: trigger metadata it reads and the parameters a
# TriggerAuthentication may give it (kedacore/keda v2.20.2,
# pkg/scalers/rabbitmq_scaler.go and pkg/scalers/authentication). The CRD types
# `metadata` as a free map of strings, so a misspelt key there passes the schema.
RABBITMQ_TRIGGER_KEYS = {
    "queueName",
    "mode",
    "queueLength",
    "value",
    "activationValue",
    "host",
    "hostFromEnv",
    "protocol",
    "vhostName",
    "useRegex",
    "excludeUnacknowledged",
    "pageSize",
    "operation",
    "timeout",
    "unsafeSsl",
    "usernameFromEnv",
    "passwordFromEnv",
}
RABBITMQ_AUTH_PARAMETERS = {
    "host",
    "protocol",
    "vhostName",
    "username",
    "password",
    "ca",
    "cert",
    "key",
    "keyPassword",
    "tls",
    "workloadIdentityResource",
    "oauthTokenURI",
    "scopes",
    "clientID",
    "clientSecret",
    "endpointParams",
}

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


# --- reporting --------------------------------------------------------------


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --- rendering --------------------------------------------------------------


def kustomize_command() -> tuple[list[str], str]:
    """`kustomize build`, else `kubectl kustomize`; kustomize 5 or newer
    (components, `patches` with inline patches)."""
    if shutil.which("kustomize"):
        command, version = (
            ["kustomize", "build"],
            subprocess.run(["kustomize", "version"], capture_output=True, text=True).stdout,
        )
    elif shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True).stdout
        command, version = ["kubectl", "kustomize"], json.loads(out or "{}").get("kustomizeVersion", "")
    else:
        sys.exit(
            "FAIL check_k8s: neither `kustomize` nor `kubectl` is on PATH; install kustomize 5+ "
            "(or kubectl 1.27+, which bundles it) to render deploy/k8s/"
        )
    match = re.search(r"v(\d+)\.(\d+)", version)
    if not match or int(match.group(1)) < 5:
        sys.exit(f"FAIL check_k8s: {' '.join(command)} is kustomize {version.strip() or '?'}; 5 or newer needed")
    return command, match.group(0)


def render(command: list[str], directory: Path) -> list[dict]:
    run = subprocess.run(command + [str(directory)], capture_output=True, text=True)
    if run.returncode != 0:
        raise RenderError(run.stderr.strip() or run.stdout.strip())
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


class RenderError(Exception):
    pass


def kustomizations() -> list[Path]:
    """Every directory under deploy/k8s with a kustomization (components are
    rendered through the kustomizations that use them)."""
    found = []
    for path in sorted(K8S.rglob("kustomization.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc.get("kind", "Kustomization") == "Kustomization":
            found.append(path.parent)
    return found


def referenced_files() -> tuple[set[Path], set[Path], dict[Path, list[Path]]]:
    """Files each kustomization (or component) reads, and which ones it uses."""
    files: set[Path] = set()
    components: set[Path] = set()
    uses: dict[Path, list[Path]] = {}
    for path in sorted(K8S.rglob("kustomization.yaml")):
        directory = path.parent
        doc = yaml.safe_load(path.read_text())
        files.add(path)
        for entry in doc.get("resources", []) + doc.get("components", []) + doc.get("configurations", []):
            target = (directory / entry).resolve()
            if target.is_dir():
                uses.setdefault(directory, []).append(target)
            else:
                files.add(target)
        for component in doc.get("components", []):
            components.add((directory / component).resolve())
        for patch in doc.get("patches", []):
            if "path" in patch:
                files.add((directory / patch["path"]).resolve())
        for generator in doc.get("configMapGenerator", []) + doc.get("secretGenerator", []):
            for entry in generator.get("files", []) + generator.get("envs", []):
                files.add((directory / entry.split("=", 1)[-1]).resolve())
    return files, components, uses


def source_index() -> dict[tuple[str, str], str]:
    """(kind, name) -> the file under deploy/k8s that defines it, so a failure
    in a rendered object names a file to fix. Generated ConfigMaps and Secrets
    map to the kustomization that generates them."""
    index: dict[tuple[str, str], str] = {}
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            doc = yaml.safe_load(path.read_text())
            for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
                for generator in doc.get(key, []):
                    index.setdefault((kind, generator["name"]), rel(path))
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "kind" in doc and "name" in doc.get("metadata", {}):
                index.setdefault((doc["kind"], doc["metadata"]["name"]), rel(path))
    return index


# --- helpers over rendered objects -------------------------------------------


class Rendered:
    """One kustomization's output, with lookups the checks share."""

    def __init__(self, directory: Path, objects: list[dict], sources: dict[tuple[str, str], str]):
        self.directory = directory
        self.name = rel(directory)
        self.objects = objects
        # A generator in this kustomization (say `behavior: replace`) wins over the base's.
        own = directory / "kustomization.yaml"
        doc = yaml.safe_load(own.read_text())
        self.sources = dict(sources)
        for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
            for generator in doc.get(key, []):
                self.sources[(kind, generator["name"])] = rel(own)

    def of(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]

    def get(self, kind: str, name: str) -> dict | None:
        return next((o for o in self.of(kind) if o["metadata"].get("name") == name), None)

    def where(self, obj: dict) -> str:
        kind, name = obj.get("kind", "?"), obj.get("metadata", {}).get("name", "?")
        source = self.sources.get((kind, name))
        if source is None:
            # A generated name carries a hash suffix.
            source = next(
                (
                    s
                    for (k, n), s in self.sources.items()
                    if k == kind and re.fullmatch(re.escape(n) + r"-[a-z0-9]{10}", name)
                ),
                None,
            )
        origin = f"{source}, " if source else ""
        return f"{origin}{kind} {name} (rendered from {self.name})"

    def workloads(self) -> list[dict]:
        return [o for o in self.objects if o.get("kind") in WORKLOAD_KINDS]

    def secret_value(self, name: str, key: str) -> str | None:
        secret = self.get("Secret", name)
        if secret is None:
            return None
        if key in (secret.get("stringData") or {}):
            return secret["stringData"][key]
        if key in (secret.get("data") or {}):
            return base64.b64decode(secret["data"][key]).decode()
        return None

    def configmap_value(self, name: str, key: str) -> str | None:
        configmap = self.get("ConfigMap", name)
        if configmap is None:
            return None
        return (configmap.get("data") or {}).get(key)


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"].get("metadata", {}).get("labels", {}) or {}


def selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels/matchExpressions, or a Service's plain map)."""
    if not selector:
        return False
    match_labels = (
        selector.get("matchLabels", {}) if ("matchLabels" in selector or "matchExpressions" in selector) else selector
    )
    if any(labels.get(k) != v for k, v in (match_labels or {}).items()):
        return False
    for expression in selector.get("matchExpressions", []) if "matchExpressions" in selector else []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def all_containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec.get("containers", [])


def herald_containers(rendered: Rendered) -> list[tuple[dict, dict]]:
    """(workload, container) for every container that runs `herald serve`."""
    found = []
    for workload in rendered.of("Deployment"):
        for container in pod_spec(workload).get("containers", []):
            if (container.get("args") or [None])[0] == "serve":
                found.append((workload, container))
    return found


def role_of(container: dict) -> str:
    args = container.get("args", [])
    return args[args.index("--role") + 1] if "--role" in args else "all"


# --- herald's configuration ---------------------------------------------------


@functools.cache
def defaults() -> dict:
    return tomllib.loads(CONFIG.read_text())


# humantime's units, as herald parses durations.
UNITS = {
    "nsec": 1e-9,
    "ns": 1e-9,
    "usec": 1e-6,
    "us": 1e-6,
    "msec": 1e-3,
    "ms": 1e-3,
    "seconds": 1,
    "second": 1,
    "sec": 1,
    "secs": 1,
    "s": 1,
    "minutes": 60,
    "minute": 60,
    "min": 60,
    "mins": 60,
    "m": 60,
    "hours": 3600,
    "hour": 3600,
    "hr": 3600,
    "hrs": 3600,
    "h": 3600,
    "days": 86400,
    "day": 86400,
    "d": 86400,
    "weeks": 604800,
    "week": 604800,
    "w": 604800,
}


def seconds(duration: str) -> float:
    """A humantime duration ("30s", "1m 30s", "5days") in seconds; NaN when it is none."""
    parts = re.findall(r"(\d+)\s*([a-zA-Z]+)", duration)
    if not parts or re.sub(r"[\d\sa-zA-Z]", "", duration) or any(u not in UNITS for _, u in parts):
        return float("nan")
    return sum(int(n) * UNITS[u] for n, u in parts)


def urls(value) -> list[str]:
    """amqp.url: one URL, a list, or a comma-separated string of them."""
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def env_value(rendered: Rendered, item: dict) -> str | None:
    if "value" in item:
        return str(item["value"])
    source = item.get("valueFrom", {})
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        return rendered.secret_value(ref["name"], ref["key"])
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        return rendered.configmap_value(ref["name"], ref["key"])
    return None


def container_env(rendered: Rendered, container: dict) -> dict[str, str | None]:
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            secret = rendered.get("Secret", source["secretRef"]["name"]) or {}
            for key in list(secret.get("data") or {}) + list(secret.get("stringData") or {}):
                env[source.get("prefix", "") + key] = rendered.secret_value(secret["metadata"]["name"], key)
        if "configMapRef" in source:
            configmap = rendered.get("ConfigMap", source["configMapRef"]["name"]) or {}
            for key, value in (configmap.get("data") or {}).items():
                env[source.get("prefix", "") + key] = value
    for item in container.get("env", []):
        env[item["name"]] = env_value(rendered, item)
    return env


def config_file(rendered: Rendered, workload: dict, container: dict) -> tuple[str | None, str | None, str]:
    """(path, text, where) of the file `--config` names, read from the mounted ConfigMap."""
    args = container.get("args", [])
    if "--config" not in args:
        return None, None, ""
    path = args[args.index("--config") + 1]
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        directory = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(directory):
            volume = volumes.get(mount["name"], {})
            if "configMap" in volume:
                name, key = volume["configMap"]["name"], path[len(directory) :]
                configmap = rendered.get("ConfigMap", name) or {"kind": "ConfigMap", "metadata": {"name": name}}
                return path, rendered.configmap_value(name, key), f"{key} of {rendered.where(configmap)}"
    return path, None, ""


def effective_config(rendered: Rendered, workload: dict, container: dict, report: Report) -> dict:
    """Defaults, then the --config file, then HERALD__* variables, as herald
    layers them; every unknown key is reported."""
    where = rendered.where(workload)
    config = copy.deepcopy(defaults())
    path, text, source = config_file(rendered, workload, container)
    if path is not None:
        if not report.check(
            text is not None,
            where,
            f"--config {path} is a mounted ConfigMap key",
            f"--config {path} is not a key of a ConfigMap mounted in container {container['name']}",
        ):
            text = ""
        try:
            layer = tomllib.loads(text or "")
        except tomllib.TOMLDecodeError as err:
            report.fail(source, f"does not parse as TOML: {err}")
            layer = {}
        unknown = [
            f"{section}.{key}" if isinstance(values, dict) else section
            for section, values in layer.items()
            for key in (values if isinstance(values, dict) else [None])
            if section not in config or (key is not None and key not in config[section])
        ]
        report.check(
            not unknown,
            where,
            f"every key of --config {path} is a key of config/herald.toml",
            f"--config {path} ({source}) sets keys config/herald.toml does not have (herald refuses to start): "
            f"{', '.join(unknown)}",
        )
        mistyped = [
            f"{section}.{key} = {value!r}"
            for section, values in layer.items()
            if isinstance(values, dict) and section in config
            for key, value in values.items()
            if key in config[section]
            and isinstance(config[section][key], (bool, int, float))
            and not (
                type(value) is type(config[section][key])
                or (type(config[section][key]) is float and type(value) is int)
            )
        ]
        report.check(
            not mistyped,
            where,
            f"every value of --config {path} has its default's type",
            f"--config {path} ({source}) gives values of the wrong type (herald refuses to start): "
            f"{', '.join(mistyped)}",
        )
        for section, values in layer.items():
            if isinstance(values, dict) and section in config:
                config[section].update({k: v for k, v in values.items() if k in config[section]})
    for name, value in container_env(rendered, container).items():
        if name.startswith("HERALD_") and not name.startswith("HERALD__") and not name.startswith("HERALD_CREDENTIAL_"):
            report.fail(where, f"{name}: neither HERALD__SECTION__KEY nor HERALD_CREDENTIAL_NAME (a typo?)")
            continue
        if not name.startswith("HERALD__"):
            continue
        parts = name[len("HERALD__") :].lower().split("__")
        if not (len(parts) == 2 and parts[0] in config and parts[1] in config[parts[0]]):
            report.fail(where, f"{name} names no key of config/herald.toml (herald refuses to start)")
        elif value is None:
            report.fail(where, f"{name} refers to a Secret or ConfigMap key that is not rendered")
        else:
            report.ok(f"{where}: {name} sets {'.'.join(parts)}, a key of config/herald.toml")
            config[parts[0]][parts[1]] = value
    return config


# --- validation: built-in objects --------------------------------------------


def validate_builtin(rendered: Rendered, report: Report) -> None:
    for obj in rendered.objects:
        if (obj.get("apiVersion"), obj.get("kind")) in CRD_SCHEMAS:
            continue
        where = rendered.where(obj)
        try:
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)
            versions = " and ".join(v.rsplit(".", 1)[0] for v in KUBERNETES_VERSIONS)
            report.ok(f"{where}: valid in Kubernetes {versions} (strict)")
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            report.fail(where, f"not valid in Kubernetes {err.version}: {path}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError as err:
            report.fail(where, f"no schema: {err.message} (a custom resource needs one in tests/deploy/schemas/)")


# --- validation: custom resources --------------------------------------------


def strict(schema: dict) -> dict:
    """Unknown fields fail wherever the CRD lists `properties` and does not
    keep unknown fields, as the API server's pruning would silently drop them.
    Only the structural tree is touched: anyOf/allOf branches only constrain."""
    if not isinstance(schema, dict):
        return schema
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    for child in schema.get("properties", {}).values():
        strict(child)
    if isinstance(schema.get("items"), dict):
        strict(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        strict(schema["additionalProperties"])
    return schema


@functools.cache
def crd_validator(file: str):
    schema = strict(json.loads((SCHEMAS / file).read_text()))
    # An openAPIV3Schema is OpenAPI 3.0's JSON Schema dialect, close to draft 4;
    # `x-kubernetes-*` and `nullable` are annotations to it.
    return jsonschema.Draft4Validator(schema)


def validate_custom(rendered: Rendered, report: Report) -> None:
    for obj in rendered.objects:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key not in CRD_SCHEMAS:
            continue
        where = rendered.where(obj)
        errors = sorted(crd_validator(CRD_SCHEMAS[key]).iter_errors(obj), key=lambda e: list(map(str, e.path)))
        try:
            # The CRD types metadata as a bare object; the API server checks it as ObjectMeta.
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata", {})}, version, strict=True
                )
        except kubernetes_validate.ValidationError as err:
            report.fail(where, f"metadata.{'.'.join(map(str, err.path))[len('metadata.') :]}: {err.message}")
        if errors:
            for error in errors[:10]:
                path = ".".join(str(p) for p in error.path) or "(top)"
                report.fail(where, f"not valid against {CRD_SCHEMAS[key]}: {path}: {error.message}")
        else:
            report.ok(f"{where}: valid against the CRD schema {CRD_SCHEMAS[key]} (unknown fields refused)")


# --- cross-checks --------------------------------------------------------------


@functools.cache
def shared_routes() -> set[str]:
    """Routes every role serves: the handlers of the `health` table in api::routes,
    each at the path of its `#[utoipa::path(...)]`."""
    text = API_ROUTES_SRC.read_text()
    start = text.find("let health = ")
    end = text.find(";", start)
    if start < 0:
        return set()
    routes = set()
    for module, handler in re.findall(r"routes!\(\s*(\w+)::(\w+)\s*\)", text[start:end]):
        source = (API_ROUTES_SRC.parent / f"{module}.rs").read_text()
        at = source.find(f"pub async fn {handler}(")
        attribute = source.rfind("#[utoipa::path(", 0, at)
        path = re.search(r'\bpath\s*=\s*"([^"]+)"', source[attribute:at]) if at >= 0 and attribute >= 0 else None
        if path:
            routes.add(path.group(1))
    return routes


def check_hardening(rendered: Rendered, report: Report) -> None:
    for workload in rendered.workloads():
        where = rendered.where(workload)
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {}) or {}
        report.check(
            spec.get("automountServiceAccountToken") is False,
            where,
            "automountServiceAccountToken: false",
            "automountServiceAccountToken must be false (herald never calls the Kubernetes API)",
        )
        for container in all_containers(spec):
            sc = container.get("securityContext", {}) or {}
            name = f"container {container['name']}"
            problems = []
            if sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
                problems.append("runAsNonRoot is not true")
            uid = sc.get("runAsUser", pod.get("runAsUser"))
            if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
                problems.append("runAsUser is not a numeric non-root uid")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append("readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append("allowPrivilegeEscalation is not false")
            if sc.get("privileged") is True:
                problems.append("privileged is true")
            capabilities = sc.get("capabilities", {}) or {}
            if "ALL" not in (capabilities.get("drop") or []):
                problems.append("capabilities.drop lacks ALL")
            if capabilities.get("add"):
                problems.append(f"capabilities.add {capabilities['add']}")
            seccomp = (sc.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                problems.append(f"seccompProfile is {seccomp or 'unset'}, not RuntimeDefault")
            report.check(
                not problems,
                where,
                f"{name} hardened (non-root uid {uid}, read-only root, no privilege escalation, "
                "no capabilities, RuntimeDefault seccomp)",
                f"{name} not hardened: {'; '.join(problems)}",
            )
            resources = container.get("resources", {}) or {}
            missing = [
                f"{kind}.{what}"
                for kind in ("requests", "limits")
                for what in ("cpu", "memory")
                if what not in (resources.get(kind) or {}) and not (kind == "limits" and what == "cpu")
            ]
            report.check(
                not missing,
                where,
                f"{name} has resource requests and a memory limit",
                f"{name} lacks resources {', '.join(missing)}",
            )


def check_herald(rendered: Rendered, report: Report) -> dict[str, dict]:
    """The herald Deployments against herald's configuration and routes; returns
    each Deployment's effective configuration."""
    configs: dict[str, dict] = {}
    routes = shared_routes()
    report.check(
        {"/healthz", "/readyz", "/metrics"} <= routes,
        rel(API_ROUTES_SRC),
        f"every role serves {', '.join(sorted(routes))}",
        f"the routes every role serves are {sorted(routes)}; expected /healthz, /readyz and /metrics",
    )
    expected_roles = {"herald-api": "api", "herald-worker": "worker"}
    seen = {}
    for workload, container in herald_containers(rendered):
        name = workload["metadata"]["name"]
        where = rendered.where(workload)
        role = role_of(container)
        seen[name] = role
        if name in expected_roles:
            report.check(
                role == expected_roles[name],
                where,
                f"runs `serve --role {role}`",
                f"runs `serve --role {role}`, expected --role {expected_roles[name]}",
            )
        config = effective_config(rendered, workload, container, report)
        configs[name] = config

        # Probes: the routes, on the port herald listens on, on every interface.
        listen = str(config["api"]["listen"])
        host, _, port = listen.rpartition(":")
        if not port.isdigit():
            report.fail(where, f"api.listen {listen!r} is not HOST:PORT")
            continue
        report.check(
            host in ("0.0.0.0", "[::]"),
            where,
            f"api.listen is {listen}: reachable from the kubelet and Prometheus",
            f"api.listen is {listen}: probes and scrapes from outside the pod cannot reach it "
            "(set HERALD__API__LISTEN=0.0.0.0:PORT)",
        )
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        report.check(
            int(port) in ports.values(),
            where,
            f"container port {port} is the api.listen port",
            f"no container port is {port}, the port api.listen binds",
        )
        for probe_kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            probe = container.get(probe_kind)
            if not report.check(
                probe is not None and "httpGet" in probe,
                where,
                f"has an HTTP {probe_kind}",
                f"{probe_kind} missing or not httpGet (expected GET {path})",
            ):
                continue
            get = probe["httpGet"]
            probe_port = ports.get(get["port"], get["port"])
            report.check(
                get.get("path") == path and get.get("path") in routes and probe_port == int(port),
                where,
                f"{probe_kind} GETs {path} on port {port}",
                f"{probe_kind} GETs {get.get('path')} on port {get['port']}; expected {path} (a route every role "
                f"serves: {', '.join(sorted(routes))}) on port {port}",
            )
        grace = pod_spec(workload).get("terminationGracePeriodSeconds", 30)
        pre_stop = (((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
        if role in ("worker", "all"):
            timeout = seconds(str(config["worker"]["shutdown_timeout"]))
            report.check(
                grace > pre_stop + timeout,
                where,
                f"terminationGracePeriodSeconds {grace} > worker.shutdown_timeout {timeout:g}s (+ preStop {pre_stop}s)",
                f"terminationGracePeriodSeconds {grace} does not outlast worker.shutdown_timeout {timeout:g}s "
                f"(+ preStop {pre_stop}s): the kubelet would SIGKILL in-flight deliveries",
            )
        if role in ("api", "all"):
            confirm = seconds(str(config["amqp"]["confirm_timeout"]))
            report.check(
                grace > pre_stop + confirm,
                where,
                f"terminationGracePeriodSeconds {grace} > preStop {pre_stop}s + amqp.confirm_timeout {confirm:g}s",
                f"terminationGracePeriodSeconds {grace} does not outlast preStop {pre_stop}s + amqp.confirm_timeout "
                f"{confirm:g}s: a POST /v1/events waiting for its confirms would be cut off",
            )
            report.check(
                bool(str(config["api"]["token"])),
                where,
                "api.token is set (HERALD__API__TOKEN)",
                "the API role needs api.token (HERALD__API__TOKEN from a Secret)",
            )
        credentials = str(config["credentials"]["dir"]).rstrip("/")
        mounts = {m["mountPath"].rstrip("/"): m for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        mount = mounts.get(credentials)
        report.check(
            mount is not None and "secret" in volumes.get(mount["name"], {}),
            where,
            f"a Secret is mounted at credentials.dir {credentials}",
            f"no Secret is mounted at credentials.dir {credentials}",
        )
    for name in expected_roles:
        report.check(
            name in seen,
            rendered.name,
            f"Deployment {name} runs herald",
            f"no Deployment {name} running `herald serve`",
        )
    return configs


def check_images(rendered: Rendered, report: Report) -> None:
    for workload, container in herald_containers(rendered):
        where = rendered.where(workload)
        image = container.get("image", "")
        if rendered.directory == K8S / "base":
            report.check(
                image == "herald:latest",
                where,
                "image herald:latest (what the root Dockerfile builds)",
                f"image is {image!r}; the base names herald:latest and overlays set the registry and tag",
            )
        elif (rendered.directory / "kustomization.yaml").read_text().find("images:") >= 0:
            name, _, tag = image.rpartition(":")
            report.check(
                "/" in name and "." in name.split("/")[0] and tag not in ("", "latest"),
                where,
                f"image {image} is pinned in a registry",
                f"image {image!r} should name a registry and a version tag",
            )


def check_references(rendered: Rendered, report: Report) -> None:
    """Every Secret and ConfigMap a pod names exists in the render, key included."""
    for workload in rendered.workloads():
        where = rendered.where(workload)
        spec = pod_spec(workload)
        wanted = []
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                wanted.append(("Secret", volume["secret"]["secretName"], None, volume["secret"].get("optional")))
            if "configMap" in volume:
                wanted.append(("ConfigMap", volume["configMap"]["name"], None, volume["configMap"].get("optional")))
        for container in all_containers(spec):
            for item in container.get("env", []):
                source = item.get("valueFrom", {})
                for kind, field in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                    if field in source:
                        ref = source[field]
                        wanted.append((kind, ref["name"], ref["key"], ref.get("optional")))
            for item in container.get("envFrom", []):
                for kind, field in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                    if field in item:
                        wanted.append((kind, item[field]["name"], None, item[field].get("optional")))
        for kind, name, key, optional in wanted:
            if optional:
                continue
            obj = rendered.get(kind, name)
            present = obj is not None and (
                key is None or key in (obj.get("data") or {}) or key in (obj.get("stringData") or {})
            )
            what = f"{kind} {name}" + (f" key {key}" if key else "")
            report.check(present, where, f"{what} exists", f"refers to {what}, which the render lacks")


def check_services(rendered: Rendered, report: Report) -> None:
    workloads = rendered.workloads()
    for workload in workloads:
        where = rendered.where(workload)
        report.check(
            selects(workload["spec"]["selector"], pod_labels(workload)),
            where,
            "its selector matches its pod labels",
            "spec.selector does not match spec.template.metadata.labels",
        )
    for service in rendered.of("Service"):
        where = rendered.where(service)
        selector = service["spec"].get("selector") or {}
        chosen = [w for w in workloads if selects(selector, pod_labels(w))]
        if not report.check(
            bool(chosen),
            where,
            f"selects the pods of {', '.join(w['metadata']['name'] for w in chosen)}",
            f"selector {selector} matches no pod template in the render",
        ):
            continue
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            for workload in chosen:
                container_ports = [p for c in pod_spec(workload)["containers"] for p in c.get("ports", [])]
                found = any(p.get("name") == target or p["containerPort"] == target for p in container_ports)
                report.check(
                    found,
                    where,
                    f"port {port.get('name', port['port'])} reaches {target} of {workload['metadata']['name']}",
                    f"targetPort {target} is no container port of {workload['metadata']['name']}",
                )
    api = rendered.get("Service", "herald-api")
    if api is not None:
        chosen = {w["metadata"]["name"] for w in workloads if selects(api["spec"].get("selector") or {}, pod_labels(w))}
        report.check(
            chosen == {"herald-api"},
            rendered.where(api),
            "sends API traffic to herald-api pods only",
            f"selects {sorted(chosen)}; only herald-api pods serve /v1/",
        )
    for pdb in rendered.of("PodDisruptionBudget"):
        where = rendered.where(pdb)
        chosen = [w for w in workloads if selects(pdb["spec"].get("selector", {}), pod_labels(w))]
        if (
            report.check(
                len(chosen) == 1,
                where,
                f"covers exactly the pods of {chosen[0]['metadata']['name'] if chosen else '?'}",
                f"selects the pods of {len(chosen)} workloads "
                f"({', '.join(w['metadata']['name'] for w in chosen)}); expected one",
            )
            and "minAvailable" in pdb["spec"]
        ):
            replicas = chosen[0]["spec"].get("replicas", 1)
            minimum = pdb["spec"]["minAvailable"]
            report.check(
                not isinstance(minimum, int) or replicas > minimum,
                where,
                f"minAvailable {minimum} < {replicas} replicas",
                f"minAvailable {minimum} with {replicas} replicas blocks every node drain",
            )


def check_scaling(rendered: Rendered, report: Report, configs: dict[str, dict]) -> None:
    targets: dict[str, list[str]] = {}
    for scaled in rendered.of("ScaledObject"):
        where = rendered.where(scaled)
        spec = scaled["spec"]
        ref = spec["scaleTargetRef"]
        target = rendered.get(ref.get("kind", "Deployment"), ref["name"])
        if not report.check(
            target is not None,
            where,
            f"scales {ref.get('kind', 'Deployment')} {ref['name']}",
            f"scaleTargetRef {ref['name']} is not in the render",
        ):
            continue
        targets.setdefault(ref["name"], []).append(where)
        for field in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"):
            report.check(field in spec, where, f"sets {field}", f"{field} is not set")
        low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        report.check(
            1 <= low <= high,
            where,
            f"keeps {low} to {high} workers",
            f"minReplicaCount {low} / maxReplicaCount {high}: at least one worker must run (workers archive dead "
            "letters and export the queue depths the alerts watch), and min <= max",
        )
        config = configs.get(ref["name"])
        if config is None:
            report.fail(where, f"{ref['name']} runs no herald worker whose configuration could name the queues")
            continue
        prefix = config["amqp"]["prefix"]
        expected = {f"{prefix}.events", f"{prefix}.deliveries"}
        queues = set()
        amqp_urls = urls(config["amqp"]["url"])
        for index, trigger in enumerate(spec.get("triggers", [])):
            if trigger.get("type") != "rabbitmq":
                continue
            metadata = trigger.get("metadata", {})
            unknown = set(metadata) - RABBITMQ_TRIGGER_KEYS
            report.check(
                not unknown,
                where,
                f"triggers[{index}] uses only keys KEDA's rabbitmq scaler reads",
                f"triggers[{index}].metadata has keys KEDA's rabbitmq scaler does not read: "
                f"{', '.join(sorted(unknown))}",
            )
            queues.add(metadata.get("queueName"))
            value = metadata.get("value", metadata.get("queueLength"))
            try:
                numeric = float(value) > 0
            except (TypeError, ValueError):
                numeric = False
            report.check(
                metadata.get("mode") == "QueueLength" and numeric,
                where,
                f"triggers[{index}] scales on QueueLength {value} of {metadata.get('queueName')}",
                f"triggers[{index}]: expected mode QueueLength and a positive value, "
                f"got mode {metadata.get('mode')!r} value {value!r}",
            )
            auth_name = (trigger.get("authenticationRef") or {}).get("name")
            auth = rendered.get("TriggerAuthentication", auth_name)
            if not report.check(
                auth is not None,
                where,
                f"triggers[{index}] authenticates with TriggerAuthentication {auth_name}",
                f"triggers[{index}].authenticationRef names {auth_name!r}, not in the render",
            ):
                continue
            for secret_ref in auth["spec"].get("secretTargetRef", []):
                auth_where = rendered.where(auth)
                report.check(
                    secret_ref["parameter"] in RABBITMQ_AUTH_PARAMETERS,
                    auth_where,
                    f"parameter {secret_ref['parameter']} is one the rabbitmq scaler reads",
                    f"parameter {secret_ref['parameter']!r} is not one the rabbitmq scaler reads",
                )
                value = rendered.secret_value(secret_ref["name"], secret_ref["key"])
                if (
                    report.check(
                        value is not None,
                        auth_where,
                        f"Secret {secret_ref['name']} key {secret_ref['key']} exists",
                        f"Secret {secret_ref['name']} key {secret_ref['key']} is not in the render",
                    )
                    and secret_ref["parameter"] == "host"
                ):
                    report.check(
                        value in amqp_urls,
                        auth_where,
                        "KEDA watches the broker (and vhost) herald uses",
                        "the host KEDA gets is not an amqp.url of the workers: it would watch another broker",
                    )
        report.check(
            queues == expected,
            where,
            f"watches {', '.join(sorted(expected))} (amqp.prefix {prefix!r})",
            f"watches {sorted(q or '?' for q in queues)}; the workers' amqp.prefix {prefix!r} means {sorted(expected)}",
        )
    for hpa in rendered.of("HorizontalPodAutoscaler"):
        where = rendered.where(hpa)
        ref = hpa["spec"]["scaleTargetRef"]
        report.check(
            rendered.get(ref["kind"], ref["name"]) is not None,
            where,
            f"scales {ref['kind']} {ref['name']}",
            f"scaleTargetRef {ref['kind']} {ref['name']} is not in the render",
        )
        report.check(
            1 <= hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"],
            where,
            "keeps at least one worker",
            "minReplicas must be at least 1 and at most maxReplicas",
        )
        targets.setdefault(ref["name"], []).append(where)
    for name, owners in targets.items():
        report.check(
            len(owners) == 1,
            rendered.name,
            f"Deployment {name} has one autoscaler",
            f"Deployment {name} is scaled by {len(owners)} autoscalers ({'; '.join(owners)}): KEDA makes an HPA of its "
            "own, and two HPAs on one Deployment fight over its replicas",
        )
        deployment = rendered.get("Deployment", name)
        report.check(
            "replicas" not in deployment["spec"],
            rendered.where(deployment),
            "leaves replicas to its autoscaler",
            "sets spec.replicas although an autoscaler owns it: every apply would reset the count",
        )


def expected_job() -> str:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            match = re.search(r'up\{job="([^"]+)"\}', rule.get("expr", ""))
            if match:
                return match.group(1)
    return "herald"


def check_monitoring(rendered: Rendered, report: Report) -> None:
    job = expected_job()
    for monitor in rendered.of("ServiceMonitor"):
        where = rendered.where(monitor)
        spec = monitor["spec"]
        services = [
            s for s in rendered.of("Service") if selects(spec.get("selector", {}), s["metadata"].get("labels", {}))
        ]
        if not report.check(
            bool(services),
            where,
            f"selects Service {', '.join(s['metadata']['name'] for s in services)}",
            f"selector {spec.get('selector')} matches no Service in the render",
        ):
            continue
        for service in services:
            labels = service["metadata"].get("labels", {})
            # The Prometheus Operator names the job after the Service, or after its jobLabel's value.
            got = labels.get(spec["jobLabel"]) if spec.get("jobLabel") else service["metadata"]["name"]
            report.check(
                got == job,
                where,
                f'scrapes {service["metadata"]["name"]} as job="{job}", as the alerts expect',
                f'scrapes {service["metadata"]["name"]} as job="{got}"; '
                f'HeraldDown in {rel(ALERTS)} watches up{{job="{job}"}}',
            )
            names = {p.get("name") for p in service["spec"].get("ports", [])}
            for endpoint in spec.get("endpoints", []):
                report.check(
                    endpoint.get("port") in names and endpoint.get("path", "/metrics") in shared_routes(),
                    where,
                    f"scrapes {endpoint.get('path', '/metrics')} on port {endpoint.get('port')}",
                    f"endpoint port {endpoint.get('port')!r} / path {endpoint.get('path')!r}: expected a port of "
                    f"{service['metadata']['name']} ({', '.join(sorted(filter(None, names)))}) and /metrics",
                )
    alerts = yaml.safe_load(ALERTS.read_text())["groups"]
    for rule in rendered.of("PrometheusRule"):
        where = rendered.where(rule)
        groups = rule["spec"].get("groups", [])
        if groups == alerts:
            report.ok(f"{where}: its groups equal {rel(ALERTS)} ({sum(len(g['rules']) for g in alerts)} rules)")
            continue
        mine = {(g["name"], r.get("alert") or r.get("record")): r for g in groups for r in g.get("rules", [])}
        theirs = {(g["name"], r.get("alert") or r.get("record")): r for g in alerts for r in g.get("rules", [])}
        differ = sorted(
            f"{g}/{n}" for (g, n) in mine.keys() | theirs.keys() if mine.get((g, n)) != theirs.get((g, n))
        ) or ["the order of groups or rules"]
        report.fail(
            where,
            f"differs from {rel(ALERTS)} in {', '.join(differ)}; regenerate it: "
            "target/deploy-venv/bin/python tests/deploy/check_k8s.py --write-rules",
        )


def redis_container(workload: dict) -> dict | None:
    return next((c for c in pod_spec(workload)["containers"] if (c.get("args") or [None])[0] == "redis-server"), None)


def check_dependencies(rendered: Rendered, report: Report, configs: dict[str, dict]) -> None:
    """When the render brings its own RabbitMQ and Redis, herald must point at them."""
    clusters = rendered.of("RabbitmqCluster")
    for cluster in clusters:
        where = rendered.where(cluster)
        replicas = cluster["spec"].get("replicas", 1)
        report.check(
            replicas >= 3 and replicas % 2 == 1,
            where,
            f"{replicas} nodes: quorum queues survive losing one",
            f"{replicas} nodes: quorum queues need an odd number, at least 3, to survive losing one",
        )
        settings = dict(
            (k.strip(), v.strip())
            for k, _, v in (
                line.partition("=")
                for line in cluster["spec"].get("rabbitmq", {}).get("additionalConfig", "").splitlines()
                if line.strip() and not line.strip().startswith("#")
            )
        )
        report.check(
            settings.get("default_queue_type") == "quorum",
            where,
            "default_queue_type = quorum",
            "additionalConfig should set default_queue_type = quorum",
        )
        report.check(
            bool(cluster["spec"].get("persistence", {}).get("storage")) and bool(cluster["spec"].get("resources")),
            where,
            "sets persistence and resources",
            "set spec.persistence.storage and spec.resources",
        )
    services = {s["metadata"]["name"]: s for s in rendered.of("Service")}
    for name, config in configs.items():
        deployment = rendered.get("Deployment", name)
        where = rendered.where(deployment)
        amqp_hosts = [urlsplit(url).hostname or "" for url in urls(config["amqp"]["url"])]
        redis_host = urlsplit(str(config["redis"]["url"])).hostname or ""
        if clusters:
            names = {c["metadata"]["name"] for c in clusters}
            report.check(
                all(h.split(".")[0] in names for h in amqp_hosts),
                where,
                f"amqp.url reaches RabbitmqCluster {', '.join(amqp_hosts)}",
                f"amqp.url hosts {amqp_hosts} are not all RabbitmqClusters of the render ({', '.join(sorted(names))})",
            )
        redis_sets = [s for s in rendered.of("StatefulSet") if redis_container(s)]
        if redis_sets:
            service = services.get(redis_host.split(".")[0])
            chosen = [
                s for s in redis_sets if service and selects(service["spec"].get("selector") or {}, pod_labels(s))
            ]
            report.check(
                bool(chosen),
                where,
                f"redis.url reaches StatefulSet {chosen[0]['metadata']['name'] if chosen else '?'}",
                f"redis.url host {redis_host!r} is no Service in front of the Redis StatefulSet in the render",
            )
    for statefulset in rendered.of("StatefulSet"):
        container = redis_container(statefulset)
        if container is not None:
            args = container.get("args") or []
            where = rendered.where(statefulset)
            aof = any(a == "--appendonly" and args[i + 1 : i + 2] == ["yes"] for i, a in enumerate(args))
            report.check(aof, where, "Redis runs with --appendonly yes", "Redis must run with --appendonly yes (AOF)")
            claims = {c["metadata"]["name"] for c in statefulset["spec"].get("volumeClaimTemplates", [])}
            data = [m for m in container.get("volumeMounts", []) if m["name"] in claims]
            report.check(
                bool(data),
                where,
                f"keeps its AOF on a PersistentVolumeClaim ({', '.join(m['mountPath'] for m in data)})",
                "mounts no volumeClaimTemplate: the AOF would not survive the pod",
            )


def check_layout(report: Report) -> None:
    copy_path = K8S / "base" / "herald.toml"
    report.check(
        copy_path.read_bytes() == CONFIG.read_bytes(),
        rel(copy_path),
        "is config/herald.toml byte for byte",
        "differs from config/herald.toml; copy it again: cp config/herald.toml deploy/k8s/base/herald.toml",
    )
    files, components, uses = referenced_files()
    on_disk = {p.resolve() for p in K8S.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".toml", ".json")}
    stray = sorted(rel(p) for p in on_disk - files)
    report.check(
        not stray,
        rel(K8S),
        "every manifest file is part of a kustomization (so it is checked)",
        f"files no kustomization uses (never rendered, never checked): {', '.join(stray)}",
    )
    rendered_dirs = set(kustomizations())
    for component in sorted(components):
        users = [d for d, targets in uses.items() if component in targets and d in rendered_dirs]
        report.check(
            bool(users),
            rel(component),
            f"is rendered through {', '.join(rel(u) for u in users)}",
            "no rendered kustomization uses this component, so nothing checks it",
        )


# --- deliberate breaks ----------------------------------------------------------


def run_checks(rendered: Rendered, report: Report) -> None:
    validate_builtin(rendered, report)
    validate_custom(rendered, report)
    check_hardening(rendered, report)
    check_references(rendered, report)
    check_services(rendered, report)
    configs = check_herald(rendered, report) if herald_containers(rendered) else {}
    check_scaling(rendered, report, configs)
    check_monitoring(rendered, report)
    check_dependencies(rendered, report, configs)


def check_breaks(rendered: Rendered, report: Report) -> None:
    """Each mutation of a good render must make the checks fail: proof that
    they can."""

    def container(objects: list[dict], name: str) -> dict:
        deployment = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)
        return pod_spec(deployment)["containers"][0]

    def scaled(objects: list[dict]) -> dict:
        return next(o for o in objects if o["kind"] == "ScaledObject")

    def deployment(objects: list[dict], name: str) -> dict:
        return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)

    def rule(objects: list[dict]) -> dict:
        return next(o for o in objects if o["kind"] == "PrometheusRule")

    # (what, how to break it, a phrase the failure must contain)
    breaks = [
        (
            "a misspelt ScaledObject field (spec.maxReplicaCont)",
            lambda o: scaled(o)["spec"].update(maxReplicaCont=scaled(o)["spec"].pop("maxReplicaCount")),
            "'maxReplicaCont'",
        ),
        (
            "a misspelt Deployment field (spec.replica)",
            lambda o: deployment(o, "herald-api")["spec"].update(replica=2),
            "'replica'",
        ),
        (
            "a readiness probe on /ready",
            lambda o: container(o, "herald-api")["readinessProbe"]["httpGet"].update(path="/ready"),
            "readinessProbe GETs /ready ",
        ),
        (
            "runAsNonRoot: false",
            lambda o: container(o, "herald-worker")["securityContext"].update(runAsNonRoot=False),
            "runAsNonRoot is not true",
        ),
        (
            "a grace period shorter than worker.shutdown_timeout",
            lambda o: pod_spec(deployment(o, "herald-worker")).update(terminationGracePeriodSeconds=20),
            "does not outlast worker.shutdown_timeout",
        ),
        (
            "HERALD__WORKER__SHUTDOWN_TIMEOUTS (no such key)",
            lambda o: container(o, "herald-worker")["env"].append(
                {"name": "HERALD__WORKER__SHUTDOWN_TIMEOUTS", "value": "9s"}
            ),
            "HERALD__WORKER__SHUTDOWN_TIMEOUTS names no key",
        ),
        (
            "a KEDA queue without the prefix",
            lambda o: scaled(o)["spec"]["triggers"][0]["metadata"].update(queueName="events"),
            "amqp.prefix 'herald' means",
        ),
        (
            "a misspelt KEDA trigger key (queueNmae)",
            lambda o: scaled(o)["spec"]["triggers"][0]["metadata"].update(queueNmae="herald.events"),
            "does not read: queueNmae",
        ),
        (
            "a PrometheusRule drifted from alerts.yml",
            lambda o: rule(o)["spec"]["groups"][0]["rules"][0].update(**{"for": "1m"}),
            "differs from deploy/prometheus/alerts.yml",
        ),
        (
            "a Service selecting no pod",
            lambda o: next(s for s in o if s["kind"] == "Service")["spec"]["selector"].update(
                **{"app.kubernetes.io/component": "nothing"}
            ),
            "matches no pod template",
        ),
    ]
    for what, mutate, phrase in breaks:
        objects = copy.deepcopy(rendered.objects)
        try:
            mutate(objects)
        except (KeyError, StopIteration, IndexError, TypeError) as err:
            report.fail(f"{rendered.name} broken on purpose", f"cannot apply {what}: {err!r} is missing")
            continue
        silent = Report(quiet=True)
        run_checks(Rendered(rendered.directory, objects, rendered.sources), silent)
        caught = [f for f in silent.failures if phrase in f]
        report.check(
            bool(caught),
            f"{rendered.name} broken on purpose",
            f"{what} is caught: {caught[0] if caught else ''}",
            f"{what} was NOT caught (no failure says {phrase!r}): the check has lost its teeth",
        )


# --- the PrometheusRule from alerts.yml -----------------------------------------

RULE_HEADER = """\
# deploy/prometheus/alerts.yml as a PrometheusRule. Edit alerts.yml, not this
# file, then regenerate it (scripts/check-deploy.sh fails while they differ):
#   target/deploy-venv/bin/python tests/deploy/check_k8s.py --write-rules
# Like the ServiceMonitor, it must carry the labels your Prometheus's
# ruleSelector asks for.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: herald
  labels:
    app.kubernetes.io/name: herald
spec:
"""


def write_rules() -> None:
    """alerts.yml's `groups:` onwards, indented under `spec:`, comments kept."""
    text = ALERTS.read_text()
    start = text.index("\ngroups:") + 1
    body = "".join("  " + line if line.strip() else line for line in text[start:].splitlines(True))
    RULE_FILE.write_text(RULE_HEADER + body)
    print(f"wrote {rel(RULE_FILE)} from {rel(ALERTS)}")


# --- main -----------------------------------------------------------------------


def main() -> int:
    if sys.argv[1:] == ["--write-rules"]:
        write_rules()
        return 0
    # Each validate() call reads the version's definitions again; read each file once.
    kubernetes_validate.utils.schema_contents = functools.cache(kubernetes_validate.utils.schema_contents)

    report = Report()
    command, version = kustomize_command()
    report.ok(f"rendering with `{' '.join(command)}` (kustomize {version})")
    check_layout(report)
    sources = source_index()
    for directory in kustomizations():
        try:
            objects = render(command, directory)
        except RenderError as err:
            report.fail(rel(directory), f"kustomize cannot render it: {err}")
            continue
        rendered = Rendered(directory, objects, sources)
        report.ok(f"{rendered.name}: renders {len(objects)} objects")
        before = len(report.failures)
        run_checks(rendered, report)
        check_images(rendered, report)
        if directory == K8S / "base":
            if len(report.failures) == before:
                check_breaks(rendered, report)
            else:
                print(
                    f"skip {rendered.name} broken on purpose: only a render that passes can show each break is caught"
                )
    return report.finish("check_k8s", "the Kubernetes manifests are valid and agree with herald")


if __name__ == "__main__":
    sys.exit(main())
