"""``tessera cache info|clear``: the kernel-cost cache on disk (``simulator.cache``)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache", help="show or clear the kernel-cost cache",
        description="Simulated kernel costs are kept on disk (keyed by the programs, the chip "
                    "description, the limits and the simulator's code) and reused by later "
                    "runs and by sweep workers. Folder: --cache-dir, $TESSERA_CACHE_DIR or "
                    "~/.cache/tessera.")
    p.add_argument("action", choices=("info", "clear"))
    p.add_argument("--json", action="store_true", help="print info as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from simulator.cache import CostCache, default_folder

    store = CostCache(default_folder())
    if args.action == "clear":
        n = store.clear()
        print(f"cleared {n} cached kernel costs from {default_folder()}")
        return 0
    info = store.info()
    if args.json:
        print(json.dumps(info))
    else:
        print(f"folder   {info['folder']}\nentries  {info['entries']} kernel costs, "
              f"{info['decisions']} tiling decisions\n"
              f"size     {info['bytes'] / 1e6:.2f} MB\ncode     {info['code']} (a change of "
              f"the simulator's code starts new keys)")
    return 0
