"""In-batch negatives: every positive of the batch is a candidate negative of every row.

The standard two-tower trick (Yi et al., "Sampling-Bias-Corrected Neural Modeling for
Large Corpus Item Recommendations", RecSys 2019): no extra item is drawn, the B positives
of the batch are shared, and the sampled softmax is corrected with ``log_q``.

Returned shape: ``ids`` [B, B] where row ``b`` holds all B positives of the batch, and
``valid`` [B, B] False wherever the candidate is one of row ``b``'s user's training
positives. That covers the diagonal (the row's own positive) and repeats of it, so a
user's positives never count as negatives; with ``exclude_positives = false`` only the
row's own positive item is masked. ``k`` is ignored (K = B), as the ``full`` sampler
ignores it.

``log_q``: the probability that a given slot of the batch holds item ``j`` is its share of
training pairs, ``q_j = count_j / nnz``, because :class:`negrec.data.batches.PairBatches` draws
training pairs uniformly (shuffled epochs). This is the usual stand-in for the streaming
frequency estimate of Yi et al.; with the losses' convention ``s_j - log(K q_j)`` and K = B,
``B q_j`` is the expected number of copies of ``j`` in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from negrec.data.interactions import Interactions
from negrec.samplers.base import SAMPLERS, Negatives, Sampler, SamplerConfig


@dataclass
class InBatchConfig(SamplerConfig):
    """``inbatch``: the batch's positives as negatives (``k`` is ignored)."""


@SAMPLERS.register("inbatch")
class InBatchSampler(Sampler):
    """The other positives of the batch, masked where they are the user's own positives."""

    Config = InBatchConfig
    config: InBatchConfig

    def __init__(self, config: InBatchConfig, train: Interactions):
        super().__init__(config, train)
        with np.errstate(divide="ignore"):  # items never seen in training: -inf, never drawn
            self.log_freq = np.log(train.item_degrees / max(train.nnz, 1))  # [n_items]
        self._log_freq: dict[str, torch.Tensor] = {}

    def _log_q_table(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self._log_freq:
            self._log_freq[key] = torch.tensor(
                self.log_freq, dtype=torch.get_default_dtype(), device=device
            )
        return self._log_freq[key]

    def sample(
        self,
        users: torch.Tensor,
        pos_items: torch.Tensor,
        k: int,
        *,
        model: Any = None,
        generator: torch.Generator,
    ) -> Negatives:
        b = users.numel()
        ids = pos_items.unsqueeze(0).expand(b, b).contiguous()  # [B, B], row b: all positives
        if self.config.exclude_positives:
            valid = ~self.train.contains(users.unsqueeze(1), ids)  # [B, B], diagonal False
        else:
            valid = ids != pos_items.unsqueeze(1)  # [B, B], only the row's own positive
        log_q = self._log_q_table(users.device)[ids]  # [B, B]
        return Negatives(ids=ids, log_q=log_q, valid=valid, shared=True)
