"""A static transform tree: chains tf edges into ``T_target_source`` for any two connected frames.

Written here because tf2_ros (its Buffer) is not installable in this environment (ENVIRONMENT.md);
on a full ROS 2 install this is what ``tf2_ros.Buffer.lookup_transform`` does for static frames.
Only what the node needs: static edges (no time interpolation), the tf rule that a frame has one
parent (a newer edge to the same child replaces the old one), and a lookup through the common
ancestor of the two frames.

Edges follow the tf convention (docs/conventions.md): a TransformStamped with
``header.frame_id = P`` and ``child_frame_id = C`` carries ``T_P_C``.
"""
from __future__ import annotations

import numpy as np

from .geometry import check_transform, invert_transform

__all__ = ["StaticTransformTree", "TransformLookupError"]


class TransformLookupError(LookupError):
    """The two frames are unknown or not connected."""


class StaticTransformTree:
    """Frames and their ``T_parent_child`` edges; ``lookup(target, source)`` -> ``T_target_source``."""

    def __init__(self) -> None:
        self._parent: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, T_parent_child)

    def set_transform(self, parent: str, child: str, T_parent_child: np.ndarray) -> None:
        """Add or replace the edge of ``child`` (one parent per frame, as in tf)."""
        if not parent or not child or parent == child:
            raise ValueError(f"tf edge: expected two different non-empty frame ids, got {parent!r} -> {child!r}")
        T = check_transform(T_parent_child, f"tf edge {parent} -> {child}")
        self._parent[child] = (parent, T)

    def _chain_to_root(self, frame: str) -> list[tuple[str, np.ndarray]]:
        """``[(frame, I), (parent, T_parent_frame), (grandparent, T_grandparent_frame), ...]``."""
        chain, T_up_frame, seen = [(frame, np.eye(4))], np.eye(4), {frame}
        while frame in self._parent:
            parent, T_parent_child = self._parent[frame]
            if parent in seen:  # a loop in the published edges: stop where it closes
                break
            T_up_frame = T_parent_child @ T_up_frame
            chain.append((parent, T_up_frame))
            seen.add(parent)
            frame = parent
        return chain

    def lookup(self, target: str, source: str) -> np.ndarray:
        """``T_target_source`` (maps points in ``source`` into ``target``), through the lowest
        common ancestor. Raises ``TransformLookupError`` naming both frames when not connected."""
        if target == source:
            return np.eye(4)
        up_source = dict(self._chain_to_root(source))  # ancestor -> T_ancestor_source
        for ancestor, T_ancestor_target in self._chain_to_root(target):
            if ancestor in up_source:
                return invert_transform(T_ancestor_target) @ up_source[ancestor]
        known = sorted(set(self._parent) | {p for p, _ in self._parent.values()})
        raise TransformLookupError(f"no tf path from {source!r} to {target!r} (known frames: {known})")

    def can_lookup(self, target: str, source: str) -> bool:
        try:
            self.lookup(target, source)
            return True
        except TransformLookupError:
            return False

    def __len__(self) -> int:
        return len(self._parent)
