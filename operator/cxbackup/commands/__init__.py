"""One module per `cxbackup` sub-command; each exposes `register(subparsers, name, help_text)`."""
