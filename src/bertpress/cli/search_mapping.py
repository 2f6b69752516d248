"""``bertpress search-mapping RECIPE``: find a layer mapping with a genetic algorithm in a proxy setting."""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search-mapping", help="search the layer mapping with a genetic algorithm in a proxy setting",
        description="Search which teacher layer each student layer learns from: a seeded genetic algorithm scores "
                    "mappings by a short distillation plus a proxy downstream score (the recipe's search: section), "
                    "beside the uniform/last/skip baselines. Writes best_mapping.yaml for "
                    "'bertpress distill RECIPE --mapping-from DIR'.")
    p.add_argument("recipe", help="path of the YAML recipe (its search: section; defaults when absent)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a recipe field, e.g. --set search.population=6 (repeatable; values are YAML)")
    p.add_argument("--output-dir", help="search directory (default search.output_dir, else output_dir + '-search')")
    p.add_argument("--workers", type=int, help="override search.workers (parallel evaluations)")
    p.add_argument("--max-evaluations", type=int, help="override search.max_evaluations")
    p.add_argument("--backend", choices=["local", "ray"], help="override search.backend")
    p.add_argument("--ray-address", help="override search.ray_address (implies --backend ray)")
    p.add_argument("--resume", action="store_true", help="continue a search; nothing evaluated is evaluated again")
    p.add_argument("--overwrite", action="store_true", help="replace a previous search in the search directory")
    p.set_defaults(func=run)


def cli_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    if args.workers is not None:
        out.append(f"search.workers={args.workers}")
    if args.max_evaluations is not None:
        out.append(f"search.max_evaluations={args.max_evaluations}")
    if args.backend or args.ray_address:
        out.append(f"search.backend={args.backend or 'ray'}")
    if args.ray_address:
        out.append(f"search.ray_address={json.dumps(args.ray_address)}")
    return out + list(args.overrides)


def run(args: argparse.Namespace) -> int:
    from bertpress.search.search import search_mapping

    result = search_mapping(args.recipe, overrides=cli_overrides(args), search_dir=args.output_dir, resume=args.resume, overwrite=args.overwrite,
                            command=shlex.join(["bertpress", *sys.argv[1:]]))
    s = result.summary
    best = s["best"]
    print(s["space"]["description"])
    parts = ", ".join(f"{t} {v:.2f}" for t, v in (best["scores"] or {}).items())
    print(f"best mapping {best['mapping']}: fitness {best['fitness']:.4f}" + (f" ({parts})" if parts else ""))
    for name, b in s["baselines"].items():
        shown = "failed" if b["fitness"] is None else f"{b['fitness']:.4f} ({best['fitness'] - b['fitness']:+.4f})"
        print(f"  {name} {b['mapping']}: {shown}")
    ev = s["evaluations"]
    print(f"{ev['distinct']} mappings ({100 * ev['distinct'] / s['space']['size']:.0f}% of the space; "
          f"{ev['this_session']} evaluated now, {ev['failed']} failed), "
          f"{s['wall_time_s'] / 60:.1f} min; written to {result.search_dir}")
    print(f"use it: bertpress distill {args.recipe} --mapping-from {result.search_dir}")
    return 0
