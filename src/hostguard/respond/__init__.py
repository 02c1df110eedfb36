"""Acting on findings: applying fixes (and later quarantine, block, kill), always recorded and reversible."""
