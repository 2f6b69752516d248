"""``bertpress recipe``: validate a recipe in a second, or print the recipe reference."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipe", help="validate a recipe, or print the recipe reference")
    verbs = p.add_subparsers(dest="recipe_verb", required=True, metavar="ACTION")
    check = verbs.add_parser("check", help="validate a recipe and print it with every default filled in")
    check.add_argument("recipe", help="path of the YAML recipe")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                       help="override a recipe field, as with distill")
    verbs.add_parser("reference", help="print the Markdown reference of every field and option")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.recipe_verb == "reference":
        from bertpress.recipe_reference import recipe_reference

        print(recipe_reference(), end="")
        return 0
    from bertpress.train.build import resolve_recipe

    recipe = resolve_recipe(args.recipe, args.overrides)
    if recipe.search is not None:  # a search recipe: its search section is checked too
        from bertpress.search.spec import SearchRecipe

        recipe = resolve_recipe(args.recipe, args.overrides, schema=SearchRecipe)
    print(recipe.to_yaml(), end="")
    return 0
