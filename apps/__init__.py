"""One sub-package per domain; each imports ``core`` only."""
