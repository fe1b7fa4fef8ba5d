"""mlprism's first-party local target (registered through the `mlprism` entry-point group)."""
