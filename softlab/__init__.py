"""softlab: human vs synthetic soft labels, with mode shifts separated from soft shape.

Layers flow one way (a lower layer never imports a higher one)::

    io, paths, runtime
      -> data (images, human labels, annotations, synthetic-mnist)
      -> labels (the 10 mode x shape conditions)
      -> models -> train -> store -> teachers
      -> experiment (arms, folds, the paired grid)
      -> metrics / cartography / stats / evaluation
      -> report (tables and claim verdicts)
      -> plots
      -> params / pipeline / cli, annotate (the annotation app)
      -> notebooks
"""

__version__ = "0.1.0"
