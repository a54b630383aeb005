"""`delgrad backends`: list installed backends (filled by the plugin work)."""
