"""Contrastive losses of CLAP and TeminAL: pure functions of embeddings and the logit scale.

Every function takes L2-normalised embeddings `audio_emb`, `text_emb` of shape [M, D] whose row
i of each is a positive pair, and `logit_scale` (the exp'ed inverse temperature, a scalar
tensor or float). Similarities are `logit_scale * audio_emb @ text_emb.T`; computed in float32
whatever the embeddings' dtype, so mixed precision does not overflow the logits.

Duplicate texts: a batch often holds several rows with the same caption ("This is a sound of
siren." for every siren clip; "dog before siren" for two dog/siren groups). Plain InfoNCE makes
each copy a negative of the others, which puts a floor above zero under the loss and pushes
same-class clips apart. Every loss here takes an optional `positives` mask ([M, M] bool, True
where row i and column j are both true pairs; see `positive_mask`): the targets are then spread
evenly over every positive (SupCon's L_out form, Khosla et al. 2020), and positives are never
down-weighted as negatives. Without a mask only the diagonal is positive, as in CLIP.

Batch layouts (docs/METHOD.md, "Losses"): a batch holds N whole groups stacked by relation,
i.e. block r holds relation r of groups 0..N-1, so row `r * N + g` is relation r of group g.
- stage A: [singles; doubles] (2N rows);
- stage B: [forward; reversed; overlay] (3N rows).
"""
from __future__ import annotations

import hashlib
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from teminal.manifests.vocabulary import STAGE_RELATIONS

STAGE_B_BLOCKS = STAGE_RELATIONS["b"]     # the block order of a stage-B batch
FORWARD, REVERSED, OVERLAY = (STAGE_B_BLOCKS.index(r) for r in ("forward", "reversed", "overlay"))


def similarity(audio_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale) -> torch.Tensor:
    """S[i, j] = logit_scale * <audio_i, text_j>, float32, [M, M]."""
    _check_pairs(audio_emb, text_emb)
    scale = torch.as_tensor(logit_scale, device=audio_emb.device).float()
    return scale * audio_emb.float() @ text_emb.float().T


def positive_ids(keys: Sequence[str]) -> torch.Tensor:
    """Stable int64 ids of row keys (equal keys, equal ids; the same on every rank and run), so
    masks can be gathered across ranks as tensors."""
    return torch.tensor([int.from_bytes(hashlib.blake2b(str(k).encode(), digest_size=8).digest(),
                                        "little", signed=True) for k in keys], dtype=torch.long)


def positive_mask(ids: torch.Tensor | Sequence[str]) -> torch.Tensor:
    """[M, M] bool: True where rows i and j carry the same key (the diagonal always)."""
    if not isinstance(ids, torch.Tensor):
        ids = positive_ids(ids)
    return ids[:, None] == ids[None, :]


def _targets(positives: torch.Tensor | None, m: int, device) -> torch.Tensor:
    """Class indices (diagonal) or, with a mask, each row's positives with equal probability."""
    if positives is None:
        return torch.arange(m, device=device)
    positives = positives.to(device)
    if positives.shape != (m, m) or not bool(positives.diagonal().all()):
        raise ValueError(f"positives must be an [{m}, {m}] bool mask with a true diagonal, got "
                         f"shape {tuple(positives.shape)}")
    p = positives.float()
    return p / p.sum(dim=1, keepdim=True)


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy for class-index or probability targets. Removed negatives have a
    -inf logit; with probability targets torch's own 0 * -inf would give NaN, so those terms
    are dropped explicitly."""
    if target.dtype == torch.long:
        return F.cross_entropy(logits, target, reduction="none")
    logp = F.log_softmax(logits, dim=1).masked_fill(target == 0, 0.0)
    return -(target * logp).sum(dim=1)


def info_nce(audio_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale,
             positives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP/CLAP): L = 1/2 (CE(S, T) + CE(S^T, T^T)), each cross-entropy
    averaged over the M rows. T is the identity (the diagonal as targets) or, with `positives`,
    row i's positives each with weight 1/|P_i| (see the module docstring)."""
    logits = similarity(audio_emb, text_emb, logit_scale)
    m = logits.shape[0]
    target = _targets(positives, m, logits.device)
    target_t = target if positives is None else _targets(positives.T, m, logits.device)
    return 0.5 * (_cross_entropy(logits, target).mean() + _cross_entropy(logits.T, target_t).mean())


def stage_a_nce(audio_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale,
                n_groups: int | None = None, weight: float = 1.0,
                positives: torch.Tensor | None = None) -> torch.Tensor:
    """Stage A: `weight` (the paper's lambda, 0.8) times symmetric InfoNCE over the 2N x 2N
    matrix of [singles; doubles]. The layout only matters for the check that the batch holds
    whole groups; the trainer may instead apply lambda itself and call `info_nce`."""
    _check_layout(audio_emb, n_groups, 2)
    return weight * info_nce(audio_emb, text_emb, logit_scale, positives)


def tnce_log_alpha(n_groups: int, alpha_same_time: float = 1.0, alpha_cross_time: float = 1.0,
                   alpha_same_overlap: float = 1.0, alpha_cross_overlap: float = 1.0,
                   device=None) -> torch.Tensor:
    """The [3N, 3N] matrix added to the stage-B logits: log(alpha) on the off-diagonal blocks.

    - time blocks (forward <-> reversed): alpha_same_time where row and column are the same
      group (the same pair in the other order, Pi(t)), alpha_cross_time elsewhere;
    - overlap blocks (forward or reversed <-> overlay): alpha_same_overlap on the same group,
      alpha_cross_overlap elsewhere;
    - diagonal blocks (and so every positive): 0.
    alpha = 0 gives -inf (that negative is removed); the positive stays finite, so the loss
    does too. The matrix is symmetric, so both directions use it."""
    alphas = {"alpha_same_time": alpha_same_time, "alpha_cross_time": alpha_cross_time,
              "alpha_same_overlap": alpha_same_overlap, "alpha_cross_overlap": alpha_cross_overlap}
    for name, value in alphas.items():
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    idx = torch.arange(3 * n_groups, device=device)
    block, group = idx // n_groups, idx % n_groups
    bi, bj = block[:, None], block[None, :]
    same = group[:, None] == group[None, :]
    time = ((bi == FORWARD) & (bj == REVERSED)) | ((bi == REVERSED) & (bj == FORWARD))
    overlap = (bi != bj) & ((bi == OVERLAY) | (bj == OVERLAY))

    def log(a: float) -> float:
        return math.log(a) if a > 0 else float("-inf")

    out = torch.zeros(3 * n_groups, 3 * n_groups, device=device)
    out[time & same] = log(alpha_same_time)
    out[time & ~same] = log(alpha_cross_time)
    out[overlap & same] = log(alpha_same_overlap)
    out[overlap & ~same] = log(alpha_cross_overlap)
    return out


def row_weights(beta, n_groups: int, device=None) -> torch.Tensor | None:
    """Per-row weights beta of the stage-B loss, [3N], or None (all 1).

    beta may be None; a number (the TACT convention, Bagad et al.: forward rows weigh 1 and the
    reversed and overlay rows weigh beta); a sequence of 3 numbers (one per block
    [forward, reversed, overlay]); or a tensor of 3N per-row weights. Weights are >= 0 and not
    all 0; the loss is their weighted mean, as torch's CrossEntropyLoss(weight=...) computes
    it in the paper's code."""
    if beta is None:
        return None
    if isinstance(beta, torch.Tensor) and beta.numel() == 3 * n_groups:
        w = beta.detach().float().reshape(-1).to(device)
    else:
        values = [float(beta)] if not isinstance(beta, (Sequence, torch.Tensor)) else \
            [float(b) for b in (beta.tolist() if isinstance(beta, torch.Tensor) else beta)]
        if len(values) == 1:
            values = [1.0, values[0], values[0]]
        if len(values) != 3:
            raise ValueError(f"beta must be a number, 3 per-block numbers or {3 * n_groups} "
                             f"per-row numbers, got {len(values)} values")
        w = torch.tensor(values, device=device).repeat_interleave(n_groups)
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"beta weights must be finite, >= 0 and not all 0, got {beta}")
    return w


def tnce(audio_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale, n_groups: int | None,
         alpha_same_time: float = 1.0, alpha_cross_time: float = 1.0,
         alpha_same_overlap: float = 1.0, alpha_cross_overlap: float = 1.0,
         beta=None, positives: torch.Tensor | None = None) -> torch.Tensor:
    """Temporal NCE (TeminAL stage B, after TACT) over [forward; reversed; overlay] of N groups.

    For audio row u with positive caption t (and symmetrically for text rows):

        TNCE(u, t) = -log e^{s(u,t)} / (sum_{t' in u's block} e^{s(u,t')} + C_time + C_overlap)

    with C_time = alpha_same_time e^{s(u, Pi(t))} + alpha_cross_time sum_{t' != t} e^{s(u, Pi(t'))}
    over the other-order block and C_overlap the same over the overlap blocks (see
    `tnce_log_alpha`). The result is 1/2 (audio->text + text->audio), each the beta-weighted
    mean over rows. With every alpha = beta = 1 it is `info_nce` over 3N; alpha_same_* = 0
    removes the same-pair hard negatives. `n_groups` None: rows / 3. With `positives`, identical
    captions anywhere in the batch (another group of the same pair, or the reversed member of
    the pair in the other order) are targets, and no alpha applies to them: they are not
    negatives.
    """
    n = _check_layout(audio_emb, n_groups, 3)
    logits = similarity(audio_emb, text_emb, logit_scale)
    log_alpha = tnce_log_alpha(n, alpha_same_time, alpha_cross_time, alpha_same_overlap,
                               alpha_cross_overlap, device=logits.device)
    if positives is not None:
        log_alpha = log_alpha.masked_fill(positives.to(logits.device), 0.0)
    logits = logits + log_alpha
    target = _targets(positives, 3 * n, logits.device)
    target_t = target if positives is None else _targets(positives.T, 3 * n, logits.device)
    per_row_a = _cross_entropy(logits, target)
    per_row_t = _cross_entropy(logits.T, target_t)
    w = row_weights(beta, n, device=logits.device)
    if w is None:
        return 0.5 * (per_row_a.mean() + per_row_t.mean())
    return 0.5 * ((w * per_row_a).sum() + (w * per_row_t).sum()) / w.sum()


def _check_pairs(audio_emb: torch.Tensor, text_emb: torch.Tensor) -> None:
    if audio_emb.dim() != 2 or audio_emb.shape != text_emb.shape:
        raise ValueError(f"audio and text embeddings must both be [M, D] with the same shape, "
                         f"got {tuple(audio_emb.shape)} and {tuple(text_emb.shape)}")


def _check_layout(emb: torch.Tensor, n_groups: int | None, n_blocks: int) -> int:
    rows = emb.shape[0]
    if n_groups is None:
        if rows % n_blocks:
            raise ValueError(f"{rows} rows do not split into {n_blocks} blocks of whole groups")
        return rows // n_blocks
    if rows != n_blocks * int(n_groups):
        raise ValueError(f"expected {n_blocks} blocks of {n_groups} groups = "
                         f"{n_blocks * n_groups} rows, got {rows}")
    return int(n_groups)
