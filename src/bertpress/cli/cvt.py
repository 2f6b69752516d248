"""``bertpress cvt [RECIPE]``: train the Cross-View Training tagger (or the supervised BiLSTM) on CoNLL-2003."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cvt", help="train the Cross-View Training NER baseline (a semi-supervised BiLSTM tagger)",
                       description="Train a Cross-View Training tagger (Clark et al., 2018) on CoNLL-2003 with "
                                   "unlabelled sentences from corpus files, or with --set semi_supervised=false the "
                                   "supervised BiLSTM. Writes OUTPUT_DIR/tagger/; 'bertpress evaluate OUTPUT_DIR "
                                   "--tasks conll2003' compares it with distilled students.")
    p.add_argument("recipe", nargs="?", help="YAML settings (see recipes/baselines/cvt-conll.yaml); --set and flags override")
    p.add_argument("--output-dir", help="override output_dir")
    p.add_argument("--unlabeled", nargs="+", metavar="SOURCE", help="override unlabeled (files, globs, .gz)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set steps=2000 --set semi_supervised=false")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in the output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bertpress.baselines.cvt import load_config
    from bertpress.baselines.cvt_train import train_cvt

    overrides = []
    if args.output_dir:
        overrides.append(f"output_dir={json.dumps(args.output_dir)}")
    if args.unlabeled:
        overrides.append(f"unlabeled={json.dumps(args.unlabeled)}")
    config = load_config(args.recipe, overrides + list(args.overrides))
    tagger = train_cvt(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    i = tagger.info
    print(f"tagger written to {config.output_dir}/tagger ({tagger.parameters / 1e6:.2f}M parameters to tag, "
          f"{i['steps']} steps, {i['labeled_tokens']:,} labelled + {i['unlabeled_tokens']:,} unlabelled tokens, "
          f"{i['cpu_seconds']:.0f} CPU-s); dev entity F1 (exact spans) {i['dev_span_f1']:.2f}")
    return 0
