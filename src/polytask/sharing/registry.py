"""The ``encoder.sharing`` registry (kept apart from the package so that plugins can import it alone)."""

from __future__ import annotations

from typing import Any

from polytask.registry import Registry

SHARING: Registry[Any] = Registry("sharing design")
