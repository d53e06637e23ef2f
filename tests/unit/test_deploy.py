"""deploy/: the compose file, nginx, Prometheus and Grafana agree with each other and the service.

The compose file goes through a real Compose implementation (``docker compose`` or
``docker-compose``) and the nginx configuration through a real ``nginx -t``; the Grafana
dashboard may name only metrics that ``/metrics`` really exports.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from beatsync.cli import main
from beatsync.service.api.app import create_app
from beatsync.service.api.uploads import FORM_OVERHEAD
from beatsync.service.config import Settings, load_settings
from beatsync.service.jobs.liveness import Liveness

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
REQUIRED_SERVICES = {
    "nginx",
    "api-1",
    "api-2",
    "worker",
    "redis",
    "postgres",
    "minio",
    "minio-init",
    "migrate",
    "prometheus",
    "grafana",
    "cleanup",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEYS?$")
FROM_ENV_FILE = re.compile(r"^\$\{([A-Z0-9_]+)(:\?[^}]+|:-)\}$")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


# --- docker-compose.yml ----------------------------------------------------------------------


def test_every_service_is_there_with_two_apis_and_two_workers() -> None:
    found = services()
    assert set(found) >= REQUIRED_SERVICES
    apis = [name for name, s in found.items() if s.get("command") == ["serve"]]
    assert sorted(apis) == ["api-1", "api-2"]
    assert found["worker"]["command"] == ["worker"]
    assert found["worker"]["deploy"]["replicas"] == 2
    assert found["migrate"]["command"] == ["migrate"]
    for name in (*apis, "worker", "migrate"):
        service = found[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (COMPOSE.parent / service["build"]["context"] / "deploy/Dockerfile").is_file()
        environment = service["environment"]
        assert environment["BEATSYNC_QUEUE"] == "celery"
        assert environment["BEATSYNC_STORAGE"] == "s3"
        assert environment["BEATSYNC_ENVIRONMENT"] == "production"
        # Only the one-shot migration migrates; replicas never race to do it.
        assert environment["BEATSYNC_MIGRATE_ON_START"] == "false"
    for name in (*apis, "worker"):
        assert found[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    # Resumable uploads may reach either replica: both mount the same spool.
    spool = found["api-1"]["environment"]["BEATSYNC_SPOOL_DIR"]
    for name in apis:
        assert f"spool:{spool}" in found[name]["volumes"]
    assert "postgres:/var/lib/postgresql/data" in found["postgres"]["volumes"]
    assert set(compose()["volumes"]) >= {"postgres", "minio", "spool", "prometheus", "grafana"}


def test_every_dependency_is_waited_for_by_its_health_or_its_completion() -> None:
    found = services()
    waited = 0
    for name, service in found.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, how in depends.items():
            waited += 1
            dependency = found[target]
            if how["condition"] == "service_healthy":
                check = dependency.get("healthcheck", {})
                assert not check.get("disable"), (name, target)
                assert check["test"][0] in ("CMD", "CMD-SHELL"), (name, target)
            else:
                assert how["condition"] == "service_completed_successfully", (name, target)
                assert dependency["restart"] == "no", (name, target)
    assert waited >= 10


def test_no_secret_is_written_into_the_compose_file() -> None:
    found = services()
    secret_names = set()
    for name, service in found.items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), name
        for variable, raw in environment.items():
            if SECRET_NAME.search(variable):
                match = FROM_ENV_FILE.match(str(raw))
                assert match, f"{name}: {variable} must come from deploy/.env, not {raw!r}"
                secret_names.add(match.group(1))
    url = found["api-1"]["environment"]["BEATSYNC_DATABASE_URL"]
    assert "${POSTGRES_PASSWORD:?" in url
    required = {
        "BEATSYNC_SECRET_KEY",
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "BEATSYNC_S3_SECRET_ACCESS_KEY",
        "GRAFANA_ADMIN_PASSWORD",
        "REDIS_PASSWORD",
    }
    assert required <= secret_names
    # The example names every secret and fills in none.
    example = env_example()
    for name in required:
        assert example[name] == "", name
    # And names every variable the compose file reads, and nothing it does not.
    read = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text(encoding="utf-8")))
    assert read == set(example)
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert any(pattern in ("deploy/.env", ".env", "/deploy/.env") for pattern in ignored)


def memory_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", str(value).lower()).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]


def resolved_default(value: object) -> str:
    """``${NAME:-default}`` as Compose fills it in when deploy/.env leaves NAME at its example."""
    found = re.fullmatch(r"\$\{([A-Z0-9_]+):-([^}]*)\}", str(value))
    if not found:
        return str(value)
    assert env_example()[found.group(1)] == found.group(2), found.group(1)
    return found.group(2)


def test_every_service_has_limits_log_rotation_and_an_init() -> None:
    for name, service in services().items():
        limits = service["deploy"]["resources"]["limits"]
        assert 0 < float(resolved_default(limits["cpus"])) <= 4, name
        assert 64 * 1024**2 <= memory_bytes(resolved_default(limits["memory"])) <= 4 * 1024**3
        options = service["logging"]["options"]
        assert service["logging"]["driver"] == "json-file", name
        assert memory_bytes(options["max-size"]) <= 50 * 1024**2, name
        assert 1 <= int(options["max-file"]) <= 10, name
        assert service["init"] is True, name
    # A worker container holds BEATSYNC_WORKERS jobs of at most ~0.7 GB each.
    worker = services()["worker"]["deploy"]["resources"]["limits"]
    jobs = int(env_example()["BEATSYNC_WORKERS"])
    assert memory_bytes(resolved_default(worker["memory"])) >= jobs * 700 * 1024**2
    assert float(resolved_default(worker["cpus"])) >= jobs


def test_health_checks_mean_ready_and_workers_answer_pings() -> None:
    found = services()
    for name in ("api-1", "api-2"):
        check = " ".join(found[name]["healthcheck"]["test"])
        assert "/api/health/ready" in check, name
    assert found["worker"]["healthcheck"]["test"] == ["CMD", "beatsync", "worker", "--ping"]
    assert not found["worker"]["healthcheck"].get("disable")


def test_uploads_in_flight_get_time_to_finish_when_an_api_stops() -> None:
    for name in ("api-1", "api-2"):
        service = services()[name]
        grace = float(resolved_default(service["environment"]["BEATSYNC_SHUTDOWN_GRACE_S"]))
        # Long enough for a 500 MB upload at 50 Mbit/s to finish, and compose waits longer.
        assert grace >= 500 * 8 / 50
        assert seconds(service["stop_grace_period"]) >= grace + 5
    assert Settings().shutdown_grace_s > 0


def test_the_worker_hosts_sweep_on_a_schedule_and_see_the_workers_scratch() -> None:
    found = services()
    cleanup = found["cleanup"]
    assert cleanup["command"][:2] == ["cleanup", "--every"]
    assert 60 <= int(cleanup["command"][2]) <= 24 * 3600
    spool = found["worker"]["environment"].get("BEATSYNC_SPOOL_DIR") or "/data/spool"
    scratch = [v for v in found["worker"]["volumes"] if v.endswith(f":{spool}/work")]
    assert scratch, "the workers' scratch is not on a volume"
    assert scratch[0] in cleanup["volumes"]
    assert cleanup["restart"] == "unless-stopped"


def test_redis_asks_for_a_password_and_the_service_gives_it() -> None:
    found = services()
    redis_service = found["redis"]
    assert "--requirepass" in " ".join(redis_service["command"])
    assert redis_service["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    url = found["worker"]["environment"]["BEATSYNC_REDIS_URL"]
    assert url.startswith("redis://:${REDIS_PASSWORD:?")


def test_make_serve_installs_the_package_alone(tmp_path: Path) -> None:
    done = subprocess.run(
        ["make", "-n", "serve", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    installs = [line for line in done.stdout.splitlines() if "pip install" in line]
    assert any(line.endswith("pip install --quiet -e .") for line in installs), installs
    assert not any("[test]" in line for line in installs), installs


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail("no Compose implementation (Debian: docker-compose; or the docker compose plugin)")


def run_compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Only the env file speaks: none of this process's variables may fill in a secret.
    clean = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(env_file.parent)}
    return subprocess.run(
        [*compose_command(), "--env-file", str(env_file), "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
    )


def test_compose_accepts_the_file_with_secrets_and_refuses_it_without(tmp_path: Path) -> None:
    example = env_example()
    filled = {name: value or secrets.token_hex(16) for name, value in example.items()}
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in filled.items()), encoding="utf-8")
    done = run_compose(env_file, "config")
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    assert set(resolved) >= REQUIRED_SERVICES
    api = resolved["api-1"]["environment"]
    assert api["BEATSYNC_SECRET_KEY"] == filled["BEATSYNC_SECRET_KEY"]
    assert api["BEATSYNC_DATABASE_URL"] == (
        f"postgresql+psycopg://{filled['POSTGRES_USER']}:{filled['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{filled['POSTGRES_DB']}"
    )
    assert (
        resolved["minio-init"]["environment"]["SECRET_KEY"]
        == (filled["BEATSYNC_S3_SECRET_ACCESS_KEY"])
    )

    refused = run_compose(DEPLOY / ".env.example", "config", "-q")
    assert refused.returncode != 0
    assert "in deploy/.env" in refused.stderr


# --- nginx.conf ------------------------------------------------------------------------------


def nginx_blocks() -> tuple[list[str], dict[str, list[str]]]:
    """The server block's own directives, and each location's directives by its argument."""
    text = re.sub(r"#[^\n]*", "", (DEPLOY / "nginx.conf").read_text(encoding="utf-8"))
    server = re.search(r"\bserver\s*\{(.*)\}\s*$", text, re.S)
    assert server is not None
    body = server.group(1)
    locations: dict[str, list[str]] = {}
    for match in re.finditer(r"location\s+([^{]+?)\s*\{([^}]*)\}", body):
        locations[match.group(1).strip()] = [
            " ".join(d.split()) for d in match.group(2).split(";") if d.strip()
        ]
    own = re.sub(r"location\s+[^{]+\{[^}]*\}", "", body)
    return [" ".join(d.split()) for d in own.split(";") if d.strip()], locations


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[unit]


def test_nginx_streams_uploads_and_progress_and_caches_no_api() -> None:
    server, locations = nginx_blocks()
    # JSON routes take what the service takes; only the upload routes take files.
    assert "client_max_body_size 64k" in server
    assert Settings().max_json_body_bytes == 64 * 1024
    for prefix in ("/api/v1/uploads", "/api/v1/tus"):
        limit = re.fullmatch(
            r"client_max_body_size (\d+)m",
            next(d for d in locations[f"^~ {prefix}"] if d.startswith("client_max_body_size")),
        )
        assert limit is not None, prefix
        assert int(limit.group(1)) * 1024 * 1024 == Settings().max_upload_bytes + FORM_OVERHEAD
    for needed in (
        "proxy_http_version 1.1",
        "proxy_set_header Upgrade $http_upgrade",
        "proxy_set_header Connection $connection_upgrade",
        "proxy_set_header X-Forwarded-For $remote_addr",
        "proxy_set_header X-Forwarded-Proto $scheme",
        "proxy_set_header X-Forwarded-Host $host",
        "gzip on",
    ):
        assert needed in server, needed
    types = next(d for d in server if d.startswith("gzip_types")).split()[1:]
    assert {"text/css", "application/javascript"} <= set(types)

    for prefix in ("/api/v1/uploads", "/api/v1/tus"):
        assert "proxy_request_buffering off" in locations[f"^~ {prefix}"], prefix
    events = locations[r"~ ^/api/v1/jobs/[^/]+/events$"]
    ws = locations[r"~ ^/api/v1/jobs/[^/]+/ws$"]
    for streamed in (events, ws):
        assert "proxy_buffering off" in streamed
        timeout = next(d for d in streamed if d.startswith("proxy_read_timeout"))
        assert seconds(timeout.split()[1]) >= 3600
    for where, directives in locations.items():
        if "/api" in where:
            assert "proxy_cache off" in directives, where
            assert "proxy_pass http://beatsync_api" in directives, where
    assert locations["= /metrics"] == ["return 404"]


def test_nginx_logs_no_query_strings() -> None:
    # Signed links and stream tickets travel in query strings: they must not reach a log.
    text = re.sub(r"#[^\n]*", "", (DEPLOY / "nginx.conf").read_text(encoding="utf-8"))
    formats = dict(re.findall(r"log_format\s+(\w+)\s+((?:'[^']*'\s*)+);", text))
    assert formats, "no log_format"
    logs = re.findall(r"access_log\s+([^;]+);", text)
    assert logs, "no access_log"
    for log in logs:
        parts = log.split()
        assert parts[0] == "off" or (len(parts) >= 2 and parts[1] in formats), log
    for name, layout in formats.items():
        for leaky in ("$request ", '$request"', "$request_uri", "$args", "$query_string", "$arg_"):
            assert leaky not in layout, (name, leaky)
        assert "$uri" in layout


def test_nginx_locations_match_the_service_routes(tmp_path: Path) -> None:
    _, locations = nginx_blocks()
    pattern = {
        "events": r"^/api/v1/jobs/[^/]+/events$",
        "ws": r"^/api/v1/jobs/[^/]+/ws$",
    }
    assert {f"~ {p}" for p in pattern.values()} <= set(locations)
    # The paths nginx singles out reach the service's stream routes: the metrics name the
    # route template that answered each.
    paths = {name: f"/api/v1/jobs/job_3J8xkAbc-_d/{name}" for name in pattern}
    app = create_app(load_settings(data_dir=tmp_path / "data"), dispatcher=Idle())
    with TestClient(app) as client:
        assert client.get(paths["events"]).status_code == 401
        with client.websocket_connect(paths["ws"]) as ws:
            assert ws.receive()["code"] == 4401
        text = client.get("/metrics").text
    answered = {
        s.labels["route"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "beatsync_http_requests_total"
    }
    for name, regex in pattern.items():
        assert f"/api/v1/jobs/{{job_id}}/{name}" in answered
        assert re.search(regex, paths[name])
        assert not re.search(regex, "/api/v1/jobs/job_3J8xkAbc-_d")
    # The upstream is exactly the API services of the compose file.
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    upstream = re.search(r"upstream beatsync_api \{([^}]*)\}", text)
    assert upstream is not None
    servers = re.findall(r"server\s+([\w.-]+:\d+)", upstream.group(1))
    assert servers == ["api-1:8000", "api-2:8000"]


def test_nginx_accepts_the_configuration(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx is not installed (Debian: nginx)")
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version)
    assert found is not None, version
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    # Here the replicas' names do not resolve; an nginx older than the image's (1.27.3) does
    # not know `resolve`, the one thing this check then leaves out.
    text = re.sub(r"api-[12]:8000", "127.0.0.1:8000", text)
    if tuple(int(part) for part in found.groups()) < (1, 27, 3):
        text = text.replace(" resolve ", " ")
    (tmp_path / "site.conf").write_text(text, encoding="utf-8")
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n    include {tmp_path}/site.conf;\n}}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


# --- Prometheus and Grafana ------------------------------------------------------------------


class Idle:
    """A dispatcher that runs nothing: these apps only answer /metrics."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def submit(self, job_id: str) -> None: ...
    def cancel(self, job_id: str) -> None: ...
    def check(self) -> None: ...
    def workers(self) -> Liveness:
        return Liveness(1, 0.0)


def exported_names(tmp_path: Path) -> set[str]:
    """Every sample name /metrics can export, from the families a real scrape declares."""
    settings = load_settings(data_dir=tmp_path / "data", min_free_disk_mb=0, log_json=False)
    with TestClient(create_app(settings, dispatcher=Idle())) as client:
        client.get("/api/health")
        text = client.get("/metrics").text
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
    }
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
PROMQL_WORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def promql_metrics(expr: str) -> set[str]:
    """The metric names an expression reads (strings, label sets, ranges, groupings removed)."""
    text = re.sub(r'"(\\.|[^"\\])*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][-+]?\d+)?", "", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        following = text[match.end() :].lstrip()[:1]
        word = match.group(0)
        if following != "(" and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/beatsync.json").read_text("utf-8"))
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", ())
        if target.get("expr")
    ]
    assert len(exprs) >= 15
    return exprs


def test_the_dashboard_reads_only_metrics_the_service_exports(tmp_path: Path) -> None:
    exported = exported_names(tmp_path)
    assert "beatsync_jobs_finished_total" in exported  # the parser works on the real text
    used: set[str] = set()
    for expr in dashboard_exprs():
        names = promql_metrics(expr)
        assert names, expr
        assert names <= exported, (expr, names - exported)
        used |= names
    # And it shows every metric the service defines.
    ours = {name for name in exported if name.startswith("beatsync_")}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in ours}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert families <= shown, families - shown


def test_the_promql_reader_finds_names_and_skips_the_rest() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, stage) (max without (instance) "
        '(rate(beatsync_job_stage_duration_seconds_bucket{stage!~"x|y"}[$__rate_interval]))))'
        " / on (stage) group_left clamp_min(up, 1e-9) * 60"
    )
    assert promql_metrics(expr) == {"beatsync_job_stage_duration_seconds_bucket", "up"}


def test_prometheus_and_grafana_point_at_the_right_places() -> None:
    found = services()
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text("utf-8"))["scrape_configs"]
    api = next(job for job in scrape if job["job_name"] == "beatsync-api")
    assert api["metrics_path"] == "/metrics"
    assert api["static_configs"][0]["targets"] == ["api-1:8000", "api-2:8000"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in found["prometheus"]["volumes"]

    provisioning = DEPLOY / "grafana/provisioning"
    source = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text("utf-8"))
    datasource = source["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards/beatsync.yml").read_text("utf-8"))
    path = provider["providers"][0]["options"]["path"]
    mounts = found["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    dashboard = json.loads((DEPLOY / "grafana/dashboards/beatsync.json").read_text("utf-8"))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


# --- the image -------------------------------------------------------------------------------


def test_the_image_is_multi_stage_slim_and_runs_as_a_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    lines = re.sub(r"\\\n", " ", text).splitlines()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    stages = [line.split() for line in lines if line.startswith("FROM ")]
    assert [s[-1] for s in stages] == ["builder", "runtime"]
    assert args[stages[-1][1].strip("${}")] == "python:3.11-slim"
    final = text[text.index("AS runtime") :]
    users = re.findall(r"^USER (\S+)$", final, re.M)
    assert users, "the runtime stage must not run as root"
    assert users[-1] not in ("root", "0")
    assert "COPY --from=builder /opt/beatsync /opt/beatsync" in final
    for tool in ("gcc", "build-essential", "apt-get install", "pip install"):
        assert tool not in final, tool
    assert re.search(r"^HEALTHCHECK .*CMD .*/api/health", re.sub(r"\\\n", " ", final), re.M)
    assert 'ENTRYPOINT ["beatsync"]' in final
    # One ignore file at the root of the build context, which every builder reads.
    assert not (DEPLOY / "Dockerfile.dockerignore").exists()
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ignore[ignore.index("*") :][:1] == ["*"]
    assert {"!src/", "!pyproject.toml", "!README.md"} <= set(ignore)


def test_migrate_brings_the_database_to_the_head_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib import resources

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("beatsync.service.db") / "migrations")
    )
    head = ScriptDirectory.from_config(config).get_current_head()
    for _ in range(2):
        assert main(["migrate", "--data-dir", str(tmp_path / "data")]) == 0
        assert capsys.readouterr().out == f"the database is at migration {head}\n"
    assert (tmp_path / "data" / "beatsync.db").is_file()
