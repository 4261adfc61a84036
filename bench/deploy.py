"""Benchmark of the deploy path (issue 10): wall time from the upload
request to the first 200 through the router, for the hello-world sample.

Each run creates a new app, uploads tests/samples/hello-world through the
app page's upload view (the same request the browser sends), and polls
``GET /`` with ``Host: <app>.localhost`` through nginx every 5 ms until it
answers 200. In between: the Celery worker unpacks and builds the image
(stack warm), pushes it, makes release v1, the deploy task asks the agent to
create the container (image layers already in the agent's store but for the
app layer), health-checks it on $PORT and reloads nginx.

One untimed warm-up run first: it makes the agent pull and unpack the stack
layer (hundreds of MB, once per host). Figure: p50 over 5 runs; goal <= 1 s.

Self-contained: starts its own Redis, registry, build network, agent, nginx
and Celery worker on a throwaway SQLite database, and removes them. Run as
root after scripts/test has made the stack: ``.venv/bin/python bench/deploy.py``.
The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TMP = Path(tempfile.mkdtemp(prefix="paas-bench-deploy-"))
TMP.chmod(0o711)  # the agent's root must be traversable (user namespaces)
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "paas.settings",
        "PAAS_DATA_DIR": str(TMP / "data"),
        "PAAS_DRAIN_SECONDS": "1",
    }
)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from paas.applications.services import app_create  # noqa: E402
from paas.celery import app as celery_app  # noqa: E402
from tests.support.agent_harness import cleanup  # noqa: E402
from tests.support.build_env import build_environment  # noqa: E402
from tests.support.redis_server import run_redis  # noqa: E402
from tests.support.router import run_router  # noqa: E402
from tests.web.conftest import Workers  # noqa: E402
from tests.web.deploy_support import add_host, agent_for, get, upload  # noqa: E402

RUNS = 5
GOALS = {"upload_to_first_200_p50_s": 1.0}


def first_200(port: int, host: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if get(port, host)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{host} did not answer 200 within {timeout_s} s")


def one_run(client: Client, user: User, port: int, name: str) -> float:
    app_create(user=user, team=user.personal_team, name=name)
    started = time.monotonic()
    upload(client, user, name)
    first_200(port, f"{name}.localhost")
    return time.monotonic() - started


def run(env: dict[str, str], router_port: int, agent: Any) -> dict[str, Any]:
    call_command("migrate", verbosity=0)
    user = User.objects.create_user(username="bench", password=secrets.token_urlsafe(12))
    add_host(agent)
    workers = Workers(env["REDIS_URL"], TMP, env)
    workers.env.update(env)
    workers.start()
    client = Client(HTTP_HOST="127.0.0.1")
    try:
        warm = one_run(client, user, router_port, "warm")
        times = [one_run(client, user, router_port, f"bench{i}") for i in range(RUNS)]
    finally:
        workers.stop_all()
    return {
        "upload_to_first_200_p50_s": round(statistics.median(times), 3),
        "runs_s": [round(t, 3) for t in times],
        "warm_up_with_stack_pull_s": round(warm, 3),
    }


def main() -> int:
    if os.geteuid() != 0:
        print("bench/deploy.py needs root (runc, netns, nginx)", file=sys.stderr)
        return 2
    run_id = secrets.token_hex(3)
    with (
        run_redis(TMP / "redis") as redis_url,
        build_environment(TMP / "build-env", run_id) as (registry, build_env),
        run_router(TMP / "router") as router,
    ):
        env = {**build_env, **router.env, "REDIS_URL": redis_url, "PAAS_DRAIN_SECONDS": "1"}
        os.environ.update(env)
        settings.UPLOAD_DIR = TMP / "uploads"
        celery_app.conf.broker_url = redis_url  # type: ignore[misc]
        agent = agent_for(registry, TMP / "agent")
        try:
            agent.start()
            figures = run(env, router.http_port, agent)
        finally:
            cleanup(agent)
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(TMP, ignore_errors=True)
    ok = all(figures[name] <= goal for name, goal in GOALS.items())
    print(json.dumps({"bench": "deploy", "figures": figures, "goals": GOALS, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
