"""``plugins`` and ``cache``: what would be loaded, and the run cache of the home folder."""

from __future__ import annotations

import argparse
from typing import IO

from orchestrator.cli.base import EXIT_OK, Commands, UsageError
from orchestrator.cli.options import home, home_option, parse_age


def add_parser(commands: Commands) -> None:
    plugins = commands.add_parser(
        "plugins",
        help="list the plugins that would be loaded",
        description="List installed plugins (entry-point group orchestrator.plugins): where "
        "each comes from and which hooks it implements.",
    )
    plugins.add_argument("--plugin", action="append", metavar="NAME", help="only these")
    plugins.add_argument(
        "--no-plugin", action="append", default=[], metavar="NAME", help="not this one"
    )
    plugins.add_argument("--json", action="store_true", help="print a JSON list")
    home_option(plugins)
    plugins.set_defaults(handler=_cmd_plugins)

    cache = commands.add_parser(
        "cache",
        help="list or clear cached runs, or explain a miss",
        description="The run cache of the home folder. ls: its entries; clear: remove them; "
        "explain RUN: why RUN (a run id, unique prefix, or SWEEP:INDEX such as last:0) missed "
        "the cache, naming the part of the key that changed, or which run it reused.",
    )
    cache.add_argument("action", choices=["ls", "clear", "explain"])
    cache.add_argument("run", nargs="?", metavar="RUN", help="with explain: the run to explain")
    cache.add_argument(
        "--older-than",
        metavar="AGE",
        help="with clear: only entries older than AGE (90s, 30m, 12h, 7d)",
    )
    cache.add_argument(
        "--json", action="store_true", help="with ls: print a JSON list; with explain: an object"
    )
    home_option(cache)
    cache.set_defaults(handler=_cmd_cache)


def _cmd_plugins(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import json

    from orchestrator.engine.plugin_host import PluginHost

    host = PluginHost.installed(err, allow=args.plugin, deny=args.no_plugin)
    items = [{"name": p.name, "source": p.source, "hooks": p.hooks} for p in host.loaded.values()]
    if args.json:
        out.write(json.dumps(items) + "\n")
    elif not items:
        out.write("no plugins loaded\n")
    for item in [] if args.json else items:
        out.write(f"{item['name']}  {item['source']}\n    hooks: {', '.join(item['hooks'])}\n")
    for name, source in [] if args.json else sorted(host.opt_in_off.items()):
        out.write(
            f"{name}  {source}\n    off: ORCHESTRATOR_ENABLE_PLUGINS={name} turns it on besides "
            f"the others (--plugin {name} loads it alone)\n"
        )
    return EXIT_OK


def _cmd_cache(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator import views

    if (args.action == "explain") != (args.run is not None):
        raise UsageError(
            "cache explain needs RUN (a run id, unique prefix, or SWEEP:INDEX)"
            if args.action == "explain"
            else f"cache {args.action} takes no RUN"
        )
    try:
        older = parse_age(args.older_than) if args.older_than else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.action == "explain":
        from orchestrator.cache_explain import print_explanation

        return print_explanation(home(args), args.run, out, as_json=args.json)
    if args.action == "ls":
        return views.list_entries(home(args), out, as_json=args.json)
    return views.clear_entries(home(args), out, older_than=older)
