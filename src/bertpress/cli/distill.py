"""``bertpress distill RECIPE [RECIPE ...]``: run one recipe (flags override its fields); several recipes that
share teacher, data, seed and batch size train as a cohort, with one teacher forward per batch."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="distil a student as a YAML recipe describes",
                       description="Distil a student as a YAML recipe describes. Flags override recipe fields.")
    p.add_argument("recipe", nargs="+", help="path of the YAML recipe; several: a cohort that shares the teacher's "
                                             "forward (same teacher, data, seed, batch size; see docs/stages.md)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a recipe field, e.g. --set train.lr=1e-4 (repeatable; values are YAML)")
    p.add_argument("--output-dir", help="override output_dir")
    p.add_argument("--teacher", help="override teacher.name_or_path")
    p.add_argument("--corpus", nargs="+", help="override data.sources (files, globs, directories)")
    p.add_argument("--max-steps", type=int, help="override train.max_steps")
    p.add_argument("--mapping-from", metavar="SEARCH_DIR",
                   help="use the best layer mapping of a finished 'bertpress search-mapping' (sets mapping.layers)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in output_dir")
    p.set_defaults(func=run)


def cli_overrides(args: argparse.Namespace) -> list[str]:
    """Shortcut flags as ``--set`` overrides (shortcuts win over the recipe, ``--set`` over shortcuts)."""
    out = []
    if args.output_dir:
        out.append(f"output_dir={json.dumps(args.output_dir)}")
    if args.teacher:
        out.append(f"teacher.name_or_path={json.dumps(args.teacher)}")
    if args.corpus:
        out.append(f"data.sources={json.dumps(args.corpus)}")
    if args.max_steps is not None:
        out.append(f"train.max_steps={args.max_steps}")
    if getattr(args, "mapping_from", None):
        from bertpress.search.report import read_best_mapping

        layers = read_best_mapping(args.mapping_from)
        out.append(f"mapping={json.dumps({'strategy': 'explicit', 'layers': layers})}")
    return out + list(args.overrides)


def run(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from bertpress.pipeline import distill
    from bertpress.train.build import resolve_recipe

    recipes = [resolve_recipe(path, cli_overrides(args)) for path in args.recipe]
    if len(recipes) > 1:
        from bertpress.train.cohort import distill_cohort

        results = distill_cohort(recipes, resume=args.resume, overwrite=args.overwrite)
    else:
        results = [distill(recipes[0], resume=args.resume, overwrite=args.overwrite)]
    if not PartialState().is_main_process:
        return 0
    for result in results:
        s = result.summary
        final = ", ".join(f"{k} {v:.4g}" for k, v in s["final"].items())
        print(f"student written to {result.student_dir} ({s['student']['parameters'] / 1e6:.1f}M parameters, "
              f"{s['steps']} steps, {s['tokens_seen']:,} tokens, {s['train_time_s']:.0f}s); held-out: {final}")
    if len(results) > 1:
        c = results[0].summary["cohort"]
        print(f"cohort of {c['members']}: {c['teacher_forwards']} teacher forwards for {c['member_batches']} "
              "member batches")
    return 0
