"""Kinds of attribution results in storage: one module per kind, found by the registry in :mod:`.base`.

The token matrix (:mod:`.token_matrix`) is storage schema v1. To add a kind, write one module
here with a :class:`StorageKind` subclass (see ``docs/storage.md``, "Adding a kind").
"""

from __future__ import annotations

from attrib_mlops.tracking.kinds.base import DEFAULT_KIND, StorageKind, get_kind, kind_names, kind_of

__all__ = ["DEFAULT_KIND", "StorageKind", "get_kind", "kind_names", "kind_of"]
