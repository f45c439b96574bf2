"""``python -m tradeloop``: the ``tradeloop`` command."""

import sys

from _tradeloop_launcher import main

sys.exit(main())
