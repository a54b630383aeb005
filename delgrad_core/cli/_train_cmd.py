"""`delgrad train`, `evaluate`, `sweep` (filled by the training work)."""
