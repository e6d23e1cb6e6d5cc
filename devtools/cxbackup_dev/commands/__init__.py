"""The `cxbackup-dev` sub-commands, one module each."""
