"""``python -m otelfin.cli``."""

import sys

from otelfin.cli import main

sys.exit(main())
