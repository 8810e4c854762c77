"""The public listing feed the directory reads."""
