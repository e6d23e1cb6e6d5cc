"""cxbackup.emulator (see ARCHITECTURE.md)."""
