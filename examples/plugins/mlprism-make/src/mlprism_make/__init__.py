"""mlprism-make: compile an mlprism pipeline to a Makefile.

    pip install mlprism-make
    mlprism compile pipeline.yaml --target make --out .
    make -j2

The plugin is this module: mlprism finds it through the ``mlprism`` entry-point
group (see pyproject.toml) and calls the hooks below. It imports only the
public ``mlprism`` API.
"""

from __future__ import annotations

import mlprism

from mlprism_make.target import MakeTarget, make_escape, make_value

__all__ = ["MakeTarget", "__version__", "make_escape", "make_value", "mlprism_register_targets"]
__version__ = "0.1.0"

# Diagnostic codes of this plugin: its own prefix, registered once at import.
mlprism.register_code("MKE001", "A string reaching the Makefile has a newline or control character Make cannot carry.")
mlprism.register_code("MKE002", "A step is named like a target the generated Makefile defines itself (`all`).")


@mlprism.hookimpl
def mlprism_register_targets(registry: mlprism.TargetRegistry) -> None:
    """Provide the `make` target."""
    registry.add(MakeTarget())
