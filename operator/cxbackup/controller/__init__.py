"""cxbackup.controller (see ARCHITECTURE.md)."""
