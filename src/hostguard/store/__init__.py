"""SQLite behind small interfaces: the precious state.db and the rebuildable cache/ directory."""
