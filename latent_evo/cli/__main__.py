"""`python -m latent_evo.cli ...` (what torchrun launches): the same as `latent-evo ...`."""

import sys

from latent_evo.cli import main

sys.exit(main())
