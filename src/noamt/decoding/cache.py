"""The keys and values that incremental decoding keeps between steps, in a double buffer."""

from __future__ import annotations

import math

import torch


class DecoderCache:
    """Keys and values kept between incremental decoding steps.

    Self-attention: the keys and values of every target position fed so far, for all decoder
    layers in one buffer (N, layers, 2, h, capacity, d/h) whose first ``length`` positions are
    filled. ``reorder`` (beam search's surviving hypotheses) gathers them into a second,
    reused buffer with one free position, so a search step copies the history once, allocates
    nothing, and appends its new position in place.

    Cross-attention: the keys and values of the encoder memory, (B, h, S, d/h) per layer,
    computed once. B may be smaller than N: the N rows are G consecutive rows per memory row
    (the beams of one sentence), which attend to that row together.

    ``max_length`` (the longest output, when known) sizes the storages once, so that steps
    reuse the same memory instead of allocating a larger buffer each time.
    """

    def __init__(self, n_layers: int, max_length: int = 0):
        self.n_layers, self.max_length = n_layers, max_length
        self.length = 0  # target positions cached
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layers
        self._self: torch.Tensor | None = None  # (N, layers, 2, h, capacity, d/h), a view of:
        self._storage = torch.empty(0)
        self._spare = torch.empty(0)  # the storage the next reorder writes into

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``layer``'s keys and values of the new positions, k and v (N, h, T, d/h), after
        the cached ones; return those of all positions, (N, h, length + T, d/h) each."""
        end = self.length + k.size(2)
        if self._self is None:
            n, h, t, dh = k.shape
            self._storage = k.new_empty(n * self.n_layers * 2 * h * max(t, self.max_length) * dh)
            self._self = self._storage[: n * self.n_layers * 2 * h * t * dh].view(n, self.n_layers, 2, h, t, dh)
        elif self._self.size(4) < end:  # no free position (no reorder since the last step)
            self._self = self._gather(self._self, None, capacity=max(end, self.max_length))
        self._self[:, layer, 0, :, self.length : end] = k
        self._self[:, layer, 1, :, self.length : end] = v
        return self._self[:, layer, 0, :, :end], self._self[:, layer, 1, :, :end]

    def advance(self, n_positions: int) -> None:
        """Count the positions every layer has just stored with :meth:`extend`."""
        self.length += n_positions

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> None:
        """Keep hypotheses ``rows`` (N',) of the self-attention cache, in that order, and, when
        given, memory rows ``sentences`` (B',) of the cross-attention cache."""
        if self._self is not None:
            self._self = self._gather(self._self, rows, capacity=self.length + 1)
        if sentences is not None:
            self.cross = [None if kv is None else (kv[0][sentences], kv[1][sentences]) for kv in self.cross]

    def _gather(self, old: torch.Tensor, rows: torch.Tensor | None, capacity: int) -> torch.Tensor:
        """Rows ``rows`` (all when None) of the filled positions of ``old``, the self-attention
        buffer, copied into the spare storage viewed as (N', layers, 2, h, capacity, d/h); the old
        storage becomes the spare one."""
        n = old.size(0) if rows is None else rows.numel()
        shape = (n, *old.shape[1:4], capacity, old.size(5))
        numel = math.prod(shape)
        if self._spare.numel() < numel:
            self._spare = old.new_empty(max(numel, numel // capacity * self.max_length))
        new = self._spare[:numel].view(shape)
        filled = old[..., : self.length, :]
        if rows is None:
            new[..., : self.length, :].copy_(filled)
        else:
            torch.index_select(filled, 0, rows, out=new[..., : self.length, :])
        self._storage, self._spare = self._spare, self._storage
        return new
