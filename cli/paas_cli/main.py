"""`paas COMMAND [options]`: the commands, their help, and the one place
errors become a message on stderr and an exit status."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from paas_cli import __version__, commands, credentials
from paas_cli.client import Api
from paas_cli.deploy import deploy
from paas_cli.errors import CliError
from paas_cli.output import Output

Handler = Callable[[argparse.Namespace, Output], int]


def _api() -> Api:
    creds = credentials.load()
    return Api(creds.url, creds.token)


def _app(args: argparse.Namespace) -> str:
    app = args.app or os.environ.get("PAAS_APP", "")
    if not app:
        raise CliError("Say which app: `-a NAME` (or set PAAS_APP).")
    return str(app)


def _with_app(fn: Callable[..., int], *names: str) -> Handler:
    """A handler calling ``fn(api, out, app, *args.<names>)``."""
    return lambda a, out: fn(_api(), out, _app(a), *(getattr(a, n) for n in names))


HANDLERS: dict[str, Handler] = {
    "login": lambda a, out: commands.login(out, a.url, a.token),
    "logout": lambda a, out: commands.logout(out),
    "apps": lambda a, out: commands.apps_list(_api(), out),
    "apps:create": lambda a, out: commands.apps_create(_api(), out, a.name, a.team),
    "apps:destroy": lambda a, out: commands.apps_destroy(_api(), out, a.name, a.confirm),
    "deploy": lambda a, out: deploy(_api(), out, _app(a), Path(a.dir), a.timeout),
    "open": _with_app(commands.app_open),
    "ps": _with_app(commands.ps),
    "ps:scale": _with_app(commands.ps_scale, "pairs"),
    "ps:restart": lambda a, out: commands.ps_action(_api(), out, _app(a), "restart", a.instance),
    "ps:stop": lambda a, out: commands.ps_action(_api(), out, _app(a), "stop", a.instance),
    "ps:start": lambda a, out: commands.ps_action(_api(), out, _app(a), "start", a.instance),
    "ps:kill": lambda a, out: commands.ps_action(
        _api(), out, _app(a), "kill", a.instance, a.signal
    ),
    "logs": _with_app(commands.logs, "follow", "ps", "num"),
    "run": lambda a, out: commands.run(
        _api(), out, _app(a), a.argv[1:] if a.argv[:1] == ["--"] else a.argv
    ),
    "config": _with_app(commands.config),
    "config:set": _with_app(commands.config_set, "pairs"),
    "config:unset": _with_app(commands.config_unset, "keys"),
    "releases": _with_app(commands.releases),
    "rollback": _with_app(commands.rollback, "release"),
    "domains": _with_app(commands.domains),
    "domains:add": _with_app(commands.domains_add, "hostname"),
    "domains:remove": _with_app(commands.domains_remove, "hostname"),
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="paas", description="Deploy and run apps on a paas platform from your terminal."
    )
    top.add_argument("--version", action="version", version=f"paas-cli {__version__}")
    sub = top.add_subparsers(dest="cmd", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    with_app = argparse.ArgumentParser(add_help=False, parents=[common])
    with_app.add_argument("-a", "--app", help="the app (default: $PAAS_APP)")

    def cmd(name: str, text: str, app: bool = True) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=text, description=text, parents=[with_app if app else common]
        )

    p = cmd("login", "save the platform's URL and your API token", app=False)
    p.add_argument("--url", required=True, help="the platform, e.g. https://paas.example.com")
    p.add_argument("--token", help="an API token (asked for if not given)")
    cmd("logout", "forget the saved token", app=False)
    cmd("apps", "list the apps you can see", app=False)
    p = cmd("apps:create", "create an app", app=False)
    p.add_argument("name")
    p.add_argument("--team", type=int, help="the team's id (default: your personal team)")
    p = cmd("apps:destroy", "delete an app and everything it has", app=False)
    p.add_argument("name")
    p.add_argument("--confirm", help="the app's name again, instead of typing it")
    p = cmd("deploy", "upload this directory, build it and roll it out")
    p.add_argument("dir", nargs="?", default=".", help="the source (default: .)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait (1800)")
    cmd("open", "open the app in a browser")
    cmd("ps", "list the app's instances")
    p = cmd("ps:scale", "set instance counts, e.g. web=2 worker=1")
    p.add_argument("pairs", nargs="*", metavar="TYPE=COUNT")
    for action in ("restart", "stop", "start"):
        p = cmd(f"ps:{action}", f"{action} the app, or one instance (like web.1)")
        p.add_argument("instance", nargs="?")
    p = cmd("ps:kill", "send a signal to one instance")
    p.add_argument("instance")
    p.add_argument("--signal", default="KILL", help="signal name or number (KILL)")
    p = cmd("logs", "show the app's log lines")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("--ps", help="only this process type (web, worker...)")
    p.add_argument("-n", "--num", type=int, default=100, help="how many recent lines (100)")
    p = cmd("run", "run a one-off command in a new container: paas run -- CMD ARGS")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="CMD")
    cmd("config", "list config vars")
    p = cmd("config:set", "set config vars: KEY=VALUE ... (a new release)")
    p.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
    p = cmd("config:unset", "unset config vars (a new release)")
    p.add_argument("keys", nargs="+", metavar="KEY")
    cmd("releases", "list releases")
    p = cmd("rollback", "roll back to a release (default: the one before the current)")
    p.add_argument("release", nargs="?", metavar="vN")
    cmd("domains", "list custom domains")
    for action in ("add", "remove"):
        p = cmd(f"domains:{action}", f"{action} a custom domain")
        p.add_argument("hostname")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.cmd:
        parser().print_help()
        return 2
    out = Output(getattr(args, "json", False))
    try:
        return HANDLERS[args.cmd](args, out)
    except CliError as exc:
        print(f"paas: {exc.message}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("paas: interrupted", file=sys.stderr)
        return 130
