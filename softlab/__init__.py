"""softlab: human vs synthetic soft labels, with mode shifts separated from soft shape.

Layers flow one way: a module imports only modules of the layers below its own, and modules on
one line (``|``) do not import each other. ``make lint`` checks this (import-linter; the
contracts are in ``pyproject.toml``)::

    io | paths | runtime | validation      files, locations, torch settings, input checks
      -> data                              verified images, human labels, annotation tables
      -> labels | metrics                  the mode x shape conditions; metric definitions
      -> stats | cartography | posthoc     strata and bootstrap; data maps; temperature scaling
      -> evaluation | inference            metric tables; pre-registered tests and verdicts
      -> models -> train -> distributed -> store
      -> generator | teachers              synthetic MNIST (a trained VAE); teacher models
      -> experiment                        arms, folds, the paired grid
      -> report                            the book's tables, cached per parameter set
      -> present -> plots                  tables and figures for the page
      -> params -> pipeline | annotate     parameter sets, papermill; the annotation app
      -> cli
      -> notebooks

The analysis layers (up to ``evaluation | inference``) compute numbers from arrays and import
neither torch nor a plotting library.
"""

__version__ = "0.1.0"
