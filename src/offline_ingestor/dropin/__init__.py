"""The drop-in for upstream's ``scicat_background_ingestor``: its options and the fast path."""
