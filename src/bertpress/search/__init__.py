"""Layer mapping search (LMS): a seeded genetic algorithm over layer mappings, scored in a proxy setting.

Modules: ``spec`` (the recipe's ``search:`` section), ``space`` (valid mappings), ``ga`` (operators),
``fitness`` (one mapping -> distil -> proxy score), ``runners`` (inline, local processes, Ray), ``state`` (atomic
cache and progress), ``search`` (orchestration), ``report`` (outputs). Nothing heavy is imported here.
"""
