"""`python -m connector.emulator --port 8765`."""

import sys

from .cli import main

sys.exit(main())
