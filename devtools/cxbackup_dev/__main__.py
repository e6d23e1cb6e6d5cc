"""`python -m cxbackup_dev` is the same as the `cxbackup-dev` command."""

from __future__ import annotations

import sys

from cxbackup_dev.cli import main

sys.exit(main())
