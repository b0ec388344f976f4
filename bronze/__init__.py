"""Bronze: raw image files (binary) ingested incrementally into ``bronze.images``."""
