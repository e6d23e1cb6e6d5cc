"""cxbackup.export (see ARCHITECTURE.md)."""
