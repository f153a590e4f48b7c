"""Batches of whole records for the record-level fine-tuning loss (``evaluate.finetune.loss: record``)."""

from __future__ import annotations

import numpy as np
import torch

from trls_core.pooling import Groups

__all__ = ["RecordBatches"]


class RecordBatches:
    """Batches of whole training records for the record-level loss.

    Each batch is ``per_batch`` records (a fresh permutation each pass, no
    short last batch) with all their windows; ``seg`` maps each window to its
    record's position in the batch, so the caller can average window logits
    per record.
    """

    def __init__(self, groups: Groups, per_batch: int, labels: torch.Tensor) -> None:
        self.groups = groups
        self.per_batch = min(int(per_batch), groups.n)
        self.labels = labels
        self.order = torch.arange(groups.n)
        self.pos = 0

    def shuffle(self, gen: torch.Generator) -> None:
        self.order, self.pos = torch.randperm(self.groups.n, generator=gen), 0

    def next(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.pos + self.per_batch > self.groups.n:
            self.shuffle(gen)
        rows = self.order[self.pos : self.pos + self.per_batch].numpy()
        self.pos += self.per_batch
        g = self.groups
        windows = np.concatenate([g.order[g.starts[r] : g.starts[r] + g.counts[r]] for r in rows])
        seg = np.repeat(np.arange(len(rows)), g.counts[rows])
        return torch.as_tensor(windows), torch.as_tensor(seg), self.labels[torch.as_tensor(rows)]
