"""`python -m diffusion` is the `diffusion` command."""

import sys

from diffusion.cli import main

sys.exit(main())
