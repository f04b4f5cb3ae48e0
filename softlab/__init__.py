"""softlab: human vs synthetic soft labels, with mode shifts separated from soft shape.

Layers flow one way (a lower layer never imports a higher one)::

    io, paths
      -> data (images, human labels, annotations, synthetic-mnist)
      -> labels (the 10 mode x shape conditions)
      -> models -> train -> store -> teachers
      -> metrics / cartography / stats / evaluation
      -> plots
      -> params / pipeline / cli  (notebooks sit on top)
"""

__version__ = "0.1.0"
