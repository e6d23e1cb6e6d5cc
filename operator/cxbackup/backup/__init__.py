"""cxbackup.backup (see ARCHITECTURE.md)."""
