"""`python -m napari_hypseg.cli`: the `hypseg` command, also as torchrun starts it
(`torchrun --nproc_per_node N -m napari_hypseg.cli train ...`)."""

import sys

from .main import main

sys.exit(main())
