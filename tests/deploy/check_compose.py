"""Offline checks of the compose demo: deploy/compose/compose.yaml and what it mounts.

compose.yaml is validated against the Compose Specification's JSON schema: the
copy of compose-spec/compose-spec's schema/compose-spec.json (Apache-2.0) that
the pinned check-jsonschema package vendors, so no network is needed. Then the
stack is checked for what the schema cannot know: dependencies and their
healthchecks, mounted files, HERALD__* names against config/herald.toml, the
herald roles, and that Prometheus, Grafana, RabbitMQ, Redis, the sink and the
demo subscription agree with each other and with the repository's files.
Prints one line per verified fact; exits 1 naming the file and the problem.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import yaml

from report import ROOT, Report

COMPOSE_DIR = ROOT / "deploy/compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
CONFIG = ROOT / "config/herald.toml"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
PROMETHEUS = ROOT / "deploy/prometheus/prometheus.yml"
DASHBOARD = ROOT / "dashboards/herald.json"
ROLES = ("api", "worker", "all")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?]([^}]*))?\}")


def interpolate(value: object) -> str:
    """A value as compose sees it with no variable set: ${VAR:-default} -> default."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", str(value))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: interpolate(v) for k, v in env.items()}


def command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def flag(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def mounts(service: dict) -> list[tuple[Path | None, str, str]]:
    """(host path or None for a named volume, container path, volume name) of each volume."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = parts[0], parts[1] if len(parts) > 1 else parts[0]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        else:
            source, target, kind = volume.get("source", ""), volume["target"], volume.get("type", "volume")
        if kind == "bind":
            out.append(((COMPOSE_DIR / os.path.expanduser(interpolate(source))).resolve(), target, ""))
        else:
            out.append((None, target, source))
    return out


def host_path(service: dict, container_path: str) -> Path | None:
    """The host file behind a container path, through the service's bind mounts."""
    best: tuple[int, Path] | None = None
    for source, target, _ in mounts(service):
        target = target.rstrip("/")
        if source is None:
            continue
        if container_path == target or container_path.startswith(target + "/"):
            if best is None or len(target) > best[0]:
                best = (len(target), source / posixpath.relpath(container_path, target))
    return best[1].resolve() if best else None


def mounted_file(report: Report, service: dict, container_path: str, reader: str) -> Path | None:
    """The host file `reader` reads at `container_path`, if a bind mount provides it."""
    file = host_path(service, container_path)
    found = report.check(
        file is not None and file.is_file(),
        COMPOSE,
        f"{reader} {file.relative_to(ROOT) if file else '?'}",
        f"{reader} {container_path!r}, which no bind mount provides",
    )
    return file if found else None


def is_one_shot(service: dict) -> bool:
    """Says so with `restart: "no"`; anything else is taken to run for good."""
    return service.get("restart") == "no"


def image_of(service: dict) -> str:
    return str(service.get("image", ""))


def find(services: dict, prefix: str) -> tuple[str, dict] | tuple[None, None]:
    for name, service in services.items():
        if image_of(service).split("/")[-1].startswith(prefix) or image_of(service).startswith(prefix):
            return name, service
    return None, None


def check_schema(report: Report, doc: dict) -> None:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    raw = schema_file.read_bytes()
    schema = json.loads(raw)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    source = (
        f"Compose Specification schema (compose-spec.json sha256 {hashlib.sha256(raw).hexdigest()[:12]}, "
        f"vendored by check-jsonschema {importlib.metadata.version('check-jsonschema')})"
    )
    report.check(
        not errors,
        COMPOSE,
        f"valid against the {source}",
        "not valid against the "
        + source
        + ": "
        + "; ".join(f"at {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors[:5]),
    )


def check_services(report: Report, services: dict, volumes: dict, config_keys: set[str]) -> None:
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            dep = services.get(target)
            if not report.check(
                dep is not None,
                COMPOSE,
                f"{name} depends on {target}, a service",
                f"{name} depends on unknown service {target!r}",
            ):
                continue
            if condition == "service_healthy":
                report.check(
                    bool(dep.get("healthcheck")),
                    COMPOSE,
                    f"{name} waits for {target} to be healthy, and {target} has a healthcheck",
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck",
                )
            elif condition == "service_completed_successfully":
                report.check(
                    is_one_shot(dep),
                    COMPOSE,
                    f"{name} waits for one-shot {target} to complete",
                    f'{name} waits for {target} to complete, but {target} restarts (set restart: "no")',
                )
        if not is_one_shot(service):
            check = service.get("healthcheck") or {}
            test = check.get("test") or []
            report.check(
                bool(test) and test != ["NONE"] and not check.get("disable"),
                COMPOSE,
                f"{name} has a healthcheck ({' '.join(map(str, test))[:60]})",
                f"{name} runs for good but has no healthcheck",
            )
        for source, target, volume in mounts(service):
            if source is None:
                report.check(
                    volume in volumes,
                    COMPOSE,
                    f"{name}: volume {volume} at {target} is declared",
                    f"{name}: volume {volume!r} (at {target}) is not declared under top-level volumes",
                )
            else:
                shown = os.path.relpath(source, ROOT)
                report.check(
                    source.exists(),
                    COMPOSE,
                    f"{name}: mounts {shown} at {target}",
                    f"{name}: mounts {shown} at {target}, which does not exist",
                )
        for key in sorted(k for k in environment(service) if k.startswith("HERALD__")):
            report.check(
                key in config_keys,
                COMPOSE,
                f"{name}: {key} names a key of config/herald.toml",
                f"{name}: {key} names no key of config/herald.toml "
                f"(HERALD__<SECTION>__<KEY>; did you mean {closest(key, config_keys)}?)",
            )


def closest(key: str, keys: set[str]) -> str:
    return (difflib.get_close_matches(key, sorted(keys), n=1, cutoff=0) or ["?"])[0]


def dockerfile_listen_port() -> str:
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^ENV\s+HERALD__API__LISTEN=\S*:(\d+)", text, re.MULTILINE)
    return match.group(1) if match else "8080"


def check_herald(report: Report, services: dict) -> dict[str, str]:
    """Checks every service built from the repository; returns the `serve` ones with their role."""
    serving: dict[str, str] = {}
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        build = {"context": build} if isinstance(build, str) else build
        context = (COMPOSE_DIR / build.get("context", ".")).resolve()
        dockerfile = (context / build.get("dockerfile", "Dockerfile")).resolve()
        report.check(
            context == ROOT and dockerfile == ROOT / "Dockerfile",
            COMPOSE,
            f"{name} is built from the root Dockerfile",
            f"{name} builds {dockerfile} in {context}, not the repository's root Dockerfile",
        )
        args = command(service)
        if args[:1] != ["serve"]:
            continue
        role = flag(args, "--role") or "all"
        claimed = next((r for r in ("api", "worker") if r in name), None)
        report.check(
            role in ROLES and (claimed is None or claimed == role),
            COMPOSE,
            f"{name} serves --role {role}",
            f"{name} runs `serve --role {role}`" + (f", but its name says {claimed}" if claimed else ""),
        )
        serving[name] = role
    roles = list(serving.values())
    report.check(
        roles.count("api") >= 1 and roles.count("worker") >= 2,
        COMPOSE,
        f"one herald API and two or more workers from the same image ({', '.join(sorted(serving))})",
        f"expected an `api` service and two `worker` services, found roles {sorted(roles)}",
    )
    port = dockerfile_listen_port()
    for name, role in serving.items():
        service = services[name]
        env = environment(service)
        listen_port = env.get("HERALD__API__LISTEN", f":{port}").rpartition(":")[2]
        test = " ".join(map(str, (service.get("healthcheck") or {}).get("test") or []))
        report.check(
            f"/{listen_port}" in test and "/readyz" in test,
            COMPOSE,
            f"{name}: healthcheck asks /readyz on api.listen's port {listen_port}",
            f"{name}: healthcheck should ask /readyz on port {listen_port} (api.listen), found: {test or 'none'}",
        )
        if role in ("api", "all"):
            report.check(
                bool(env.get("HERALD__API__TOKEN")),
                COMPOSE,
                f"{name}: HERALD__API__TOKEN set (the API refuses to start without it)",
                f"{name}: runs the API but sets no HERALD__API__TOKEN",
            )
        for key, what in (("HERALD__AMQP__URL", "RabbitMQ"), ("HERALD__REDIS__URL", "Redis")):
            host = urlsplit(env.get(key, "")).hostname
            report.check(
                host in services,
                COMPOSE,
                f"{name}: {key} points at the {host} service",
                f"{name}: {key} should name the compose service of {what}, found host {host!r}",
            )
    return serving


def check_rabbitmq(report: Report, services: dict, serving: dict[str, str]) -> None:
    name, rabbit = find(services, "rabbitmq")
    if not report.check(
        rabbit is not None, COMPOSE, f"RabbitMQ is the {name} service", "no rabbitmq service"
    ):
        return
    plugins_file = host_path(rabbit, "/etc/rabbitmq/enabled_plugins")
    plugins = (
        set(re.findall(r"[a-z_]+", plugins_file.read_text()))
        if plugins_file and plugins_file.is_file()
        else set()
    )
    report.check(
        {"rabbitmq_management", "rabbitmq_prometheus"} <= plugins,
        plugins_file or COMPOSE,
        "enables rabbitmq_management and rabbitmq_prometheus",
        f"{name}: /etc/rabbitmq/enabled_plugins should enable rabbitmq_management and "
        f"rabbitmq_prometheus, has {sorted(plugins)}",
    )
    env = environment(rabbit)
    user, password = env.get("RABBITMQ_DEFAULT_USER", "guest"), env.get("RABBITMQ_DEFAULT_PASS", "guest")
    report.check(
        user != "guest",
        COMPOSE,
        f"{name}: a user other than guest (guest may only connect from localhost)",
        f"{name}: set RABBITMQ_DEFAULT_USER; guest cannot connect from another container",
    )
    for herald in serving:
        url = urlsplit(environment(services[herald]).get("HERALD__AMQP__URL", ""))
        report.check(
            (url.username, url.password) == (user, password),
            COMPOSE,
            f"{herald}: HERALD__AMQP__URL logs in as {name}'s default user",
            f"{herald}: HERALD__AMQP__URL's user and password differ from {name}'s RABBITMQ_DEFAULT_USER/PASS",
        )


def check_redis(report: Report, services: dict) -> None:
    name, redis = find(services, "redis")
    if not report.check(redis is not None, COMPOSE, f"Redis is the {name} service", "no redis service"):
        return
    args = command(redis)
    report.check(
        flag(args, "--appendonly") == "yes",
        COMPOSE,
        f"{name} runs with AOF persistence (--appendonly yes)",
        f"{name} must run `redis-server --appendonly yes`: a Redis back empty leaves workers on a stale snapshot",
    )
    report.check(
        any(source is None and target.rstrip("/") == "/data" for source, target, _ in mounts(redis)),
        COMPOSE,
        f"{name} keeps /data in a volume",
        f"{name} needs a named volume at /data for its AOF to survive a re-create",
    )


def check_demo(report: Report, services: dict, serving: dict[str, str]) -> None:
    sink_name = next((n for n, s in services.items() if command(s)[:1] == ["sink"]), None)
    if not report.check(
        sink_name is not None,
        COMPOSE,
        f"herald sink is the {sink_name} service",
        "no service runs `herald sink`",
    ):
        return
    sink_args = command(services[sink_name])
    sink_port = (flag(sink_args, "--listen") or "127.0.0.1:9000").rpartition(":")
    report.check(
        sink_port[0] in ("0.0.0.0", "[::]"),
        COMPOSE,
        f"{sink_name} listens on {sink_port[0]}:{sink_port[2]}, reachable from the workers",
        f"{sink_name} must --listen on 0.0.0.0 to be reached from other containers",
    )
    appliers = [n for n, s in services.items() if command(s)[:2] == ["subscriptions", "apply"]]
    for applier in appliers:
        args = command(services[applier])
        container_file = flag(args, "-f") or flag(args, "--file") or ""
        file = mounted_file(report, services[applier], container_file, f"{applier} applies")
        if file is None:
            continue
        subs = yaml.safe_load(file.read_text())
        subs = subs.get("subscriptions", [subs]) if isinstance(subs, dict) else subs
        for sub in subs:
            url = urlsplit(sub.get("url", ""))
            if url.hostname != sink_name:
                continue
            report.check(
                str(url.port or 80) == sink_port[2],
                file,
                f"subscription {sub['name']} targets {sink_name}:{sink_port[2]}",
                f"subscription {sub.get('name')} targets port {url.port}, the sink listens on {sink_port[2]}",
            )
            secret = flag(sink_args, "--secret")
            report.check(
                secret is None or secret == sub.get("secret"),
                file,
                f"subscription {sub['name']}'s secret is the sink's --secret: signatures verify",
                f"subscription {sub.get('name')}'s secret differs from {sink_name}'s --secret: every signature would fail",
            )
    for name in [*serving, *appliers]:
        if serving.get(name) == "api":
            continue
        report.check(
            environment(services[name]).get("HERALD__DELIVERY__ALLOW_PRIVATE_TARGETS") == "true",
            COMPOSE,
            f"{name}: HERALD__DELIVERY__ALLOW_PRIVATE_TARGETS=true (the sink has a private address)",
            f"{name}: set HERALD__DELIVERY__ALLOW_PRIVATE_TARGETS=true, or the SSRF guard refuses the sink",
        )


def check_prometheus(report: Report, services: dict, serving: dict[str, str]) -> None:
    name, prom = find(services, "prometheus")
    if not report.check(
        prom is not None, COMPOSE, f"Prometheus is the {name} service", "no prometheus service"
    ):
        return
    config_path = "/etc/prometheus/prometheus.yml"
    for arg in command(prom):
        if arg.startswith("--config.file="):
            config_path = arg.partition("=")[2]
    config_file = mounted_file(report, prom, config_path, f"{name} reads")
    if config_file is None:
        return
    config = yaml.safe_load(config_file.read_text())
    jobs = {job["job_name"]: job for job in config.get("scrape_configs", [])}
    reference = {j["job_name"]: j for j in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}["herald"]
    herald = jobs.get("herald", {})
    report.check(
        herald.get("metrics_path", "/metrics") == reference.get("metrics_path", "/metrics"),
        config_file,
        "has the job `herald` of deploy/prometheus/prometheus.yml",
        'needs the scrape job `herald` (HeraldDown watches up{job="herald"}) scraping /metrics',
    )
    targets = {t for sc in herald.get("static_configs", []) for t in sc.get("targets", [])}
    port = dockerfile_listen_port()
    wanted = {f"{svc}:{port}" for svc in serving}
    report.check(
        wanted <= targets,
        config_file,
        f"job herald scrapes every herald process: {', '.join(sorted(wanted))}",
        f"job herald misses {', '.join(sorted(wanted - targets))} (every role serves /metrics on api.listen)",
    )
    unknown = {t for t in targets if t.rpartition(":")[0] not in services}
    report.check(
        not unknown,
        config_file,
        "every scrape target of job herald is a compose service",
        f"targets no service has: {sorted(unknown)}",
    )
    rules = [posixpath.join(posixpath.dirname(config_path), r) for r in config.get("rule_files", [])]
    report.check(
        any(host_path(prom, r) == ALERTS for r in rules),
        config_file,
        f"loads deploy/prometheus/alerts.yml as {', '.join(rules)}",
        f"rule_files {rules} should load deploy/prometheus/alerts.yml, mounted into {name}",
    )
    promtool_check(report, prom, config_file, config_path, rules)
    alert_jobs = set(re.findall(r'job\s*=~?\s*"([^"]+)"', ALERTS.read_text()))
    report.check(
        alert_jobs <= set(jobs),
        ALERTS,
        f"every job the alerts name is scraped in the compose stack: {', '.join(sorted(alert_jobs))}",
        f"alerts name jobs {sorted(alert_jobs - set(jobs))} that {config_file.relative_to(ROOT)} does not scrape",
    )


def promtool_check(report: Report, prom: dict, config_file: Path, config_path: str, rules: list[str]) -> None:
    """`promtool check config` on the files as Prometheus sees them, where promtool is installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        print(
            f"skip  {config_file.relative_to(ROOT)}: promtool not installed (scripts/check-observability.sh installs it)"
        )
        return
    with tempfile.TemporaryDirectory() as tmp:
        for container_path in [config_path, *rules]:
            source = host_path(prom, container_path)
            if source is None or not source.is_file():
                return  # reported above
            copy = Path(tmp) / container_path.lstrip("/")
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, copy)
        done = subprocess.run(
            [promtool, "check", "config", str(Path(tmp) / config_path.lstrip("/"))],
            capture_output=True,
            text=True,
        )
    report.check(
        done.returncode == 0,
        config_file,
        "promtool check config: valid, with its rule files as mounted",
        "promtool check config fails: " + (done.stderr or done.stdout).strip().replace("\n", " | "),
    )


def check_grafana(report: Report, services: dict) -> None:
    name, grafana = find(services, "grafana")
    if not report.check(grafana is not None, COMPOSE, f"Grafana is the {name} service", "no grafana service"):
        return
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    if not report.check(
        provisioning is not None and provisioning.is_dir(),
        COMPOSE,
        f"{name} is provisioned from {provisioning.relative_to(ROOT) if provisioning else '?'}",
        f"{name} has no provisioning directory mounted at /etc/grafana/provisioning",
    ):
        return
    sources = [
        ds
        for f in sorted((provisioning / "datasources").glob("*.y*ml"))
        for ds in (yaml.safe_load(f.read_text()) or {}).get("datasources", [])
    ]
    prom_name, _ = find(services, "prometheus")
    prometheus_sources = [ds for ds in sources if ds.get("type") == "prometheus"]
    report.check(
        any(urlsplit(ds.get("url", "")).hostname == prom_name for ds in prometheus_sources),
        provisioning / "datasources",
        f"a Prometheus data source at the {prom_name} service",
        f"no data source of type prometheus with a URL on the {prom_name} service",
    )
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    uids = {str(ref.get("uid")) for ref in datasource_refs(dashboard)}
    fixed = {uid for uid in uids if not uid.startswith("$")}
    provisioned = {str(ds.get("uid")) for ds in sources}
    report.check(
        fixed <= provisioned,
        DASHBOARD,
        f"every fixed data source uid the dashboard names is provisioned ({', '.join(sorted(fixed)) or 'none'})",
        f"data source uids {sorted(fixed - provisioned)} are not provisioned in {provisioning.relative_to(ROOT)}/datasources",
    )
    for uid in sorted(uids - fixed):
        var = variables.get(uid.strip("${}"), {})
        report.check(
            var.get("type") == "datasource"
            and any(ds.get("type") == var.get("query") and ds.get("isDefault") for ds in sources),
            DASHBOARD,
            f"variable {uid} (type {var.get('query')}) resolves to the provisioned default data source",
            f"variable {uid} needs a provisioned default data source of type {var.get('query')!r}",
        )
    providers = [
        p
        for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for p in (yaml.safe_load(f.read_text()) or {}).get("providers", [])
    ]
    loaded = [
        p["options"]["path"]
        for p in providers
        if p.get("type", "file") == "file"
        and host_path(grafana, posixpath.join(p["options"]["path"], DASHBOARD.name)) == DASHBOARD
    ]
    report.check(
        bool(loaded),
        provisioning / "dashboards",
        f"a dashboard provider loads dashboards/herald.json from {', '.join(loaded)}",
        f"no file provider's options.path has dashboards/herald.json mounted in {name}",
    )
    home = environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        report.check(
            host_path(grafana, home) == DASHBOARD,
            COMPOSE,
            f"{name}: the home dashboard is dashboards/herald.json",
            f"{name}: GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH {home} is not dashboards/herald.json",
        )


def datasource_refs(node: object):
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and "uid" in ds:
            yield ds
        for value in node.values():
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from datasource_refs(value)


def main() -> int:
    report = Report()
    if not report.check(COMPOSE.is_file(), COMPOSE, "exists", "missing"):
        return 1
    doc = yaml.safe_load(COMPOSE.read_text())
    check_schema(report, doc)
    services, volumes = doc.get("services") or {}, doc.get("volumes") or {}
    config = tomllib.loads(CONFIG.read_text())
    config_keys = {
        f"HERALD__{section.upper()}__{key.upper()}" for section, table in config.items() for key in table
    }
    check_services(report, services, volumes, config_keys)
    serving = check_herald(report, services)
    check_rabbitmq(report, services, serving)
    check_redis(report, services)
    check_demo(report, services, serving)
    check_prometheus(report, services, serving)
    check_grafana(report, services)
    return report.finish("check_compose")


if __name__ == "__main__":
    sys.exit(main())
