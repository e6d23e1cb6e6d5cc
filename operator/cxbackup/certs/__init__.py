"""cxbackup.certs (see ARCHITECTURE.md)."""
