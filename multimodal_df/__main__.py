"""``python -m multimodal_df COMMAND ...``: the same as the ``multimodal-df`` console command."""

import sys

from .cli import main

sys.exit(main())
