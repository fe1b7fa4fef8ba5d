"""mlprism's first-party docker target (registered through the `mlprism` entry-point group)."""
