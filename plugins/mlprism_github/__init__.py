"""mlprism's first-party github target (registered through the `mlprism` entry-point group)."""
