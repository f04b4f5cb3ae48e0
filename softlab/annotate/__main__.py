"""``python -m softlab.annotate ...`` = ``softlab annotate ...``."""

import sys

from softlab.annotate import main_annotate

sys.exit(main_annotate())
