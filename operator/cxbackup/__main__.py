"""`python -m cxbackup` is the same as the `cxbackup` command."""

from __future__ import annotations

import sys

from cxbackup.cli import main

sys.exit(main())
