"""`python -m sts_service.models` = `livedub-models`."""

import sys

from .cli import main

sys.exit(main())
