"""The plugin's tests get `--update-goldens` from mlprism.testing."""

from mlprism.testing import pytest_addoption, pytest_configure  # noqa: F401
