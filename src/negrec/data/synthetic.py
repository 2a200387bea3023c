"""The built-in default dataset: seeded synthetic implicit feedback with known structure.

Users and items get latent vectors drawn around ``n_clusters`` planted taste centres; item
popularity follows a power law (Zipf exponent ``popularity_exponent``), and so do user
activity levels. Each user's items are drawn without replacement with probability
proportional to ``popularity_i * exp(affinity * <u, v_i>)`` (Gumbel top-k, vectorised over
blocks of users, so memory grows with the block, not with n_users x n_items). A model that
learns the latent structure ranks far better than a popularity ranking, while the
popularity skew makes negative sampling choices matter as on real data.
Defaults give about the size of MovieLens-100K (943 users, 1,682 items, ~100k rows).
"""

from __future__ import annotations

import numpy as np

from negrec.data.interactions import Interactions

#: user x item entries scored at a time (float64 keys: 32 MiB per block)
BLOCK_ENTRIES = 1 << 22


def synthetic_interactions(
    n_users: int = 943,
    n_items: int = 1682,
    mean_degree: float = 106.0,
    *,
    n_clusters: int = 12,
    dim: int = 16,
    affinity: float = 6.0,
    popularity_exponent: float = 0.7,
    seed: int = 0,
) -> Interactions:
    """Sample a synthetic dataset; the same arguments always give the same interactions.

    Timestamps are a random order of each user's items, so leave-last-out splits work too.
    """
    rng = np.random.default_rng(seed)
    users, items, log_popularity, degrees = latent_structure(
        rng, n_users, n_items, mean_degree, n_clusters, dim, popularity_exponent
    )

    # Gumbel top-k: sampling without replacement proportionally to exp(logits), a block of
    # users at a time so memory stays O(block x n_items), not O(n_users x n_items); the
    # generator fills arrays in row-major order, so blocks draw the same noise as one array
    user_idx, item_idx = [], []
    block = max(1, BLOCK_ENTRIES // n_items)
    for start in range(0, n_users, block):
        rows = slice(start, min(start + block, n_users))
        logits = log_popularity[None, :] + affinity * users[rows] @ items.T  # [b, n_items]
        keys = logits + rng.gumbel(size=logits.shape)
        chosen = _top_in_order(keys, degrees[rows])  # [b, max degree], most likely first
        take = np.arange(chosen.shape[1])[None, :] < degrees[rows, None]
        user_idx.append(np.broadcast_to(np.arange(start, rows.stop)[:, None], take.shape)[take])
        item_idx.append(chosen[take])
    users_all, items_all = np.concatenate(user_idx), np.concatenate(item_idx)
    return Interactions.from_arrays(
        users_all,
        items_all,
        n_users=n_users,
        n_items=n_items,
        timestamps=rng.random(items_all.size),
    )


def _top_in_order(keys: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Per row of ``keys`` [b, n], the column ids of its ``degrees.max()`` largest keys,
    largest first: what a full descending argsort starts with, found by a partition and a
    sort of those few (continuous Gumbel keys tie with probability 0)."""
    width = int(degrees.max())
    if width < keys.shape[1]:
        top = np.argpartition(-keys, width - 1, axis=1)[:, :width]  # [b, width], unordered
    else:
        top = np.broadcast_to(np.arange(keys.shape[1]), keys.shape)
    order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def latent_structure(
    rng: np.random.Generator,
    n_users: int,
    n_items: int,
    mean_degree: float,
    n_clusters: int,
    dim: int,
    popularity_exponent: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The planted structure, drawn from ``rng`` in a fixed order: unit user and item
    vectors around ``n_clusters`` centres ([n_users, dim], [n_items, dim]), Zipf log
    popularities [n_items] in a random item order, and user degrees [n_users]."""
    centres = rng.normal(size=(n_clusters, dim))
    users = centres[rng.integers(n_clusters, size=n_users)] + 0.5 * rng.normal(size=(n_users, dim))
    items = centres[rng.integers(n_clusters, size=n_items)] + 0.5 * rng.normal(size=(n_items, dim))
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    # Zipf popularity with a random item order, so item id carries no signal.
    log_popularity = -popularity_exponent * np.log(rng.permutation(n_items) + 1.0)
    # log-normal user activity scaled to the requested mean degree, at least 5 items each
    activity = rng.lognormal(mean=0.0, sigma=0.8, size=n_users)
    degrees = np.clip(np.rint(activity / activity.mean() * mean_degree), 5, n_items // 2)
    return users, items, log_popularity, degrees.astype(np.int64)
