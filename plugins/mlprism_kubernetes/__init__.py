"""mlprism's first-party kubernetes target (registered through the `mlprism` entry-point group)."""
