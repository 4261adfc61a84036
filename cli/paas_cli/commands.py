"""One function per command: each takes the API, the output and its
arguments, and returns the process's exit status."""

from __future__ import annotations

import getpass
import shlex
import webbrowser
from typing import Any

from paas_cli import credentials
from paas_cli.client import Api
from paas_cli.errors import CliError
from paas_cli.follow import follow_log
from paas_cli.output import Output


def login(out: Output, url: str, token: str | None) -> int:
    token = token or getpass.getpass("API token (from the platform's Tokens page): ").strip()
    api = Api(url, token)
    apps = api.get("apps")  # proves the URL and the token before anything is saved
    path = credentials.save(credentials.Credentials(url=url.rstrip("/"), token=token))
    out.say(f"Logged in to {url}; {len(apps.get('apps', []))} apps visible. Saved in {path}.")
    return 0


def logout(out: Output) -> int:
    out.say("Logged out." if credentials.forget() else "Not logged in.")
    return 0


def apps_list(api: Api, out: Output) -> int:
    apps = api.get("apps")
    if not out.data(apps):
        rows = [(a["name"], a.get("url", ""), a.get("created_at", "")[:19]) for a in apps["apps"]]
        out.table(["name", "url", "created"], rows, "No apps yet: `paas apps:create NAME`.")
    return 0


def apps_create(api: Api, out: Output, name: str, team: int | None) -> int:
    body: dict[str, Any] = {"name": name}
    if team is not None:
        body["team"] = team
    app = api.post("apps", body)
    if not out.data(app):
        out.say(f"Created {app['name']}. Deploy it: `paas deploy -a {app['name']}`.")
    return 0


def apps_destroy(api: Api, out: Output, name: str, confirm: str | None) -> int:
    if confirm is None:
        out.note(f"This removes {name} and everything it has: instances, domains, images, logs.")
        confirm = input(f"Type the app's name ({name}) to confirm: ").strip()
    if confirm != name:
        raise CliError(f"Not destroyed: {confirm!r} is not {name!r}.")
    result = api.post(f"apps/{name}/delete", {"confirm": confirm})
    if not out.data(result):
        out.say(f"Destroying {name}.")
    return 0


def app_open(api: Api, out: Output, app: str) -> int:
    url = str(api.get(f"apps/{app}").get("url", ""))
    if not url:
        raise CliError(f"{app} has no URL yet.")
    out.say(url)
    webbrowser.open(url)
    return 0


def ps(api: Api, out: Output, app: str) -> int:
    data = api.get(f"apps/{app}/instances")
    if not out.data(data):
        rows = [_ps_row(i) for i in data["instances"]]
        out.table(["instance", "release", "state", "host", "published", "restarts"], rows,
                  f"{app} runs nothing. Deploy it, or `paas ps:scale web=1 -a {app}`.")  # fmt: skip
    return 0


def _ps_row(i: dict[str, Any]) -> tuple[Any, ...]:
    state = i.get("state_label", i["state"])
    where = f"{i['process_type']}.{i['index']}"
    return (
        where,
        f"v{i['release']}",
        state,
        i["host"],
        i.get("published") or "",
        i["restart_count"],
    )


def ps_scale(api: Api, out: Output, app: str, pairs: list[str]) -> int:
    if not pairs:
        raise CliError("Say what to scale: `paas ps:scale web=2 worker=1`.")
    for pair in pairs:
        kind, _, count = pair.partition("=")
        if not kind or not count.isdigit():
            raise CliError(f"{pair!r} is not TYPE=COUNT (like web=2).")
        api.post(f"apps/{app}/formation/{kind}", {"count": int(count)})
        out.say(f"Scaling {kind} to {count}.")
    return 0


def ps_action(api: Api, out: Output, app: str, action: str, instance: str | None,
              signal: str = "KILL") -> int:  # fmt: skip
    if instance is None:
        if action == "kill":
            raise CliError("Say which instance to kill: `paas ps:kill web.1`.")
        api.post(f"apps/{app}/actions/{action}", {})
        out.say(f"{action.capitalize()}ing {app}.")
        return 0
    name = _container(api, app, instance)
    api.post(f"apps/{app}/instances/{name}/{action}", {"signal": signal})
    out.say(f"{action.capitalize()} of {instance} queued.")
    return 0


def _container(api: Api, app: str, instance: str) -> str:
    """``web.1`` (or the container's own name) -> the container's name."""
    for i in api.get(f"apps/{app}/instances")["instances"]:
        if instance in (i["name"], f"{i['process_type']}.{i['index']}"):
            return str(i["name"])
    raise CliError(f"{app} has no instance {instance!r}; see `paas ps -a {app}`.")


def logs(api: Api, out: Output, app: str, follow: bool, ps_type: str | None, lines: int) -> int:
    def show(line: dict[str, Any]) -> None:
        if not out.data(line):
            print(_log_line(line), flush=True)

    if follow:  # streamed as the platform stores lines (paas_cli/follow.py)
        return follow_log(api, out, app=app, ps=ps_type, lines=lines, show=show)
    for line in api.get(f"apps/{app}/logs", ps=ps_type, limit=lines).get("lines", []):
        show(line)
    return 0


def _log_line(line: dict[str, Any]) -> str:
    """Like Heroku's: ``<time> <source>[<instance>]: <text>``."""
    where = line.get("instance") or line.get("process_type") or ""
    return f"{line.get('time', '')} {line.get('source', 'app')}[{where}]: {line['text']}"


def run(api: Api, out: Output, app: str, command: list[str]) -> int:
    if not command:
        raise CliError("Say what to run: `paas run -a APP -- python manage.py migrate`.")
    text = " ".join(_quote(c) for c in command)
    out.note(f"Running `{text}` on {app}...")
    result = api.request("POST", f"apps/{app}/run", body={"command": text}, timeout=3600)
    if not out.data(result):
        for line in result.get("output", []):
            print(line)
        if result.get("timed_out"):
            out.note("The command ran out of time and was stopped.")
        if result.get("oom_killed"):
            out.note("The command was killed for using more than its memory limit.")
    code = result.get("exit_code")
    return int(code) if isinstance(code, int) and 0 <= code < 256 else 1


def _quote(arg: str) -> str:
    return shlex.quote(arg)


def config(api: Api, out: Output, app: str) -> int:
    data = api.get(f"apps/{app}/config")
    if not out.data(data):
        rows = [(c["key"], c["value"]) for c in data["config"]]
        out.table(["key", "value"], rows, f"{app} has no config vars.")
    return 0


def config_set(api: Api, out: Output, app: str, pairs: list[str]) -> int:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{pair!r} is not KEY=VALUE.")
        values[key] = value
    if not values:
        raise CliError("Say what to set: `paas config:set KEY=VALUE ...`.")
    result = api.post(f"apps/{app}/config", {"set": values})
    if not out.data(result):
        release = result.get("release") or {}
        out.say(f"Set {', '.join(values)}; {release.get('label', 'a new release')} rolls out.")
    return 0


def config_unset(api: Api, out: Output, app: str, keys: list[str]) -> int:
    result = api.post(f"apps/{app}/config", {"unset": keys})
    if not out.data(result):
        out.say(f"Unset {', '.join(keys)}.")
    return 0


def releases(api: Api, out: Output, app: str) -> int:
    data = api.get(f"apps/{app}/releases")
    if not out.data(data):
        rows = [(r["label"], r["state"], r["description"], (r.get("created_at") or "")[:19])
                for r in data["releases"]]  # fmt: skip
        out.table(["release", "state", "description", "created"], rows, f"{app} has no releases.")
    return 0


def rollback(api: Api, out: Output, app: str, target: str | None) -> int:
    if target is None:
        done = [r for r in api.get(f"apps/{app}/releases")["releases"]
                if r["state"] in ("current", "retired")]  # fmt: skip
        current = [r for r in done if r["state"] == "current"]
        older = [r for r in done if current and r["number"] < current[0]["number"]]
        if not older:
            raise CliError(f"{app} has no earlier release to roll back to.")
        number = max(r["number"] for r in older)
    else:
        text = target.lower().lstrip("v")
        if not text.isdigit():
            raise CliError(f"{target!r} is not a release (like v3).")
        number = int(text)
    release = api.post(f"apps/{app}/releases/{number}/rollback", {})
    if not out.data(release):
        out.say(f"Rolling back to v{number}: {release['label']}.")
    return 0


def domains(api: Api, out: Output, app: str) -> int:
    data = api.get(f"apps/{app}/domains")
    if not out.data(data):
        rows = [(d.get("hostname", ""), "https" if d.get("certificate") else "http")
                for d in data["domains"]]  # fmt: skip
        out.table(["domain", "scheme"], rows, f"{app} has no custom domains.")
    return 0


def domains_add(api: Api, out: Output, app: str, hostname: str) -> int:
    domain = api.post(f"apps/{app}/domains", {"hostname": hostname})
    if not out.data(domain):
        out.say(f"Added {hostname}: point its DNS at this platform's router.")
    return 0


def domains_remove(api: Api, out: Output, app: str, hostname: str) -> int:
    api.delete(f"apps/{app}/domains/{hostname}")
    out.say(f"Removed {hostname}.")
    return 0
