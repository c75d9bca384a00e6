"""Fitting a `PromptProjection` between two models' input-embedding spaces, with no task data.

Anchors are the tokens both vocabularies share (`alignment.shared_tokens`), embedded by each
model's embedding module (the space prompts live in). Both sides are centred and scaled to unit
mean row norm, then:
* `"lstsq"`: ridge least squares (penalty `ridge` x the mean eigenvalue of X'X), with the mapped
  vectors' mean norm restored to the target's (ridge maps come out short);
* `"procrustes"`: the (semi-)orthogonal map maximising agreement (SVD of X'Y). Different widths:
  the map is [source_width, target_width] with orthonormal rows (or columns), i.e. the smaller
  space is embedded isometrically in the larger one.
With `row_norm="target_tokens"` every projected row is then rescaled to the target anchors' mean
row norm: a trained prompt sits off the token manifold, and the map amplifies those directions
(SmolLM2 -> Gemma: rows ~3x Gemma's token norm, which Gemma misreads; rescaled, zero-shot accuracy
went from below no prompt to near the trained one).
Fit quality is measured on held-out anchors: mean cosine to the true target token (mean removed)
and top-1 / top-10 nearest-token agreement among ALL target embedding rows.
"""

from __future__ import annotations

import math
import numbers
import time

import torch

from ..fingerprint import base_model_fingerprint
from ..ids_embedding import text_embedding_of
from ..init import embed_token_ids, nearest_token_ids
from ..options import Option, is_finite_number, is_integer, parse_option
from .alignment import shared_tokens
from .projection import PromptProjection



class ProjectionFit(Option):
    """How the map between the two embedding spaces is fitted."""

    LSTSQ = "lstsq"  # ridge least squares, norm restored
    PROCRUSTES = "procrustes"  # (semi-)orthogonal Procrustes


class RowNorm(Option):
    """What the norm of every projected row is set to."""

    NONE = "none"  # the plain map
    TARGET_TOKENS = "target_tokens"  # the target's mean anchor-token norm, as the target model consumes tokens


def _centre_scale(rows: torch.Tensor) -> tuple[torch.Tensor, float]:
    mean = rows.mean(dim=0)
    return mean, (rows - mean).norm(dim=1).mean().item()


def _solve(method: str, source: torch.Tensor, target: torch.Tensor, ridge: float) -> torch.Tensor:
    """The map W [ds, dt] between centred, unit-scaled anchor rows."""
    if method == "lstsq":
        gram = source.T @ source
        penalty = ridge * gram.diagonal().mean()
        weight = torch.linalg.solve(gram + penalty * torch.eye(gram.shape[0], dtype=gram.dtype), source.T @ target)
        return weight * (target.norm(dim=1).mean() / (source @ weight).norm(dim=1).mean())  # restore the norm
    left, _, right = torch.linalg.svd(source.T @ target, full_matrices=False)
    return left @ right


def _retrieval(projected: torch.Tensor, true_ids: torch.Tensor, table_module, target_mean, chunk: int = 16384):
    """top-1 / top-10 agreement of `projected` [m, dt] with `true_ids` among every target row (mean removed)."""
    every_row = torch.arange(table_module.weight.shape[0])
    _, best_ids = nearest_token_ids(projected, table_module, every_row, 10, centre=target_mean, chunk=chunk)
    hits = best_ids == true_ids.unsqueeze(1)
    return hits[:, 0].float().mean().item(), hits.any(dim=1).float().mean().item()


def _check_settings(ridge, holdout_fraction, max_eval, min_anchors, seed, lowercase) -> None:
    if not is_finite_number(ridge) or ridge < 0:
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}.")
    if not is_finite_number(holdout_fraction) or not 0 < holdout_fraction < 1:  # 0: no anchor to measure, 1: none to fit
        raise ValueError(f"holdout_fraction must be a number in (0, 1), got {holdout_fraction!r}: the fit's quality is "
                         "measured on the held-out anchors (at least one), the map fitted on the rest.")  # fmt: skip
    if not is_integer(max_eval) or max_eval <= 0:
        raise ValueError(f"max_eval must be a positive integer, got {max_eval!r}.")
    if min_anchors is not None and (not is_integer(min_anchors) or min_anchors <= 0):
        raise ValueError(f"min_anchors must be a positive integer or None, got {min_anchors!r}.")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):  # (numpy's integers too)
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    if not isinstance(lowercase, bool):
        raise ValueError(f"lowercase must be True or False, got {lowercase!r}.")


def fit_projection(source_model, source_tokenizer, target_model, target_tokenizer, method: str = "lstsq",
                   ridge: float = 0.01, holdout_fraction: float = 0.1, lowercase: bool = False, seed: int = 0,
                   min_anchors: int | None = None, max_eval: int = 1000, row_norm: str = "none") -> PromptProjection:  # fmt: skip
    """Fit a map from `source_model`'s prompt space to `target_model`'s (see module docstring).

    Args:
        method: `"lstsq"` or `"procrustes"`.
        ridge: lstsq penalty as a fraction of the mean eigenvalue of the source Gram matrix.
        holdout_fraction: anchors kept out of the fit to measure its quality.
        min_anchors: fewest anchors left to fit on after the holdout (default: the source width, so the fit is
            determined; at least 2).
        max_eval: held-out anchors used for the (costly) nearest-token retrieval.
        row_norm: `"none"` (the plain map) or `"target_tokens"` (rescale every projected row to
            the mean norm of the target's anchor tokens, as the target model consumes them).
    """
    method = parse_option(ProjectionFit, method, "method").value  # plain strings from here on (messages, JSON)
    row_norm = parse_option(RowNorm, row_norm, "row_norm").value
    _check_settings(ridge, holdout_fraction, max_eval, min_anchors, seed, lowercase)
    began = time.perf_counter()
    # the rows each model's forward makes of token ids (found 2026-12-07: Falcon-H1's multiplier was left out, so a
    # prompt projected onto it went in 5.66x too small)
    source_table, target_table = text_embedding_of(source_model), text_embedding_of(target_model)
    source_ids, target_ids, _ = shared_tokens(source_tokenizer, source_table.weight.shape[0], target_tokenizer,
                                              target_table.weight.shape[0], lowercase)  # fmt: skip
    needed = min_anchors if min_anchors is not None else source_table.weight.shape[1]
    order = torch.randperm(len(source_ids), generator=torch.Generator().manual_seed(int(seed)))
    holdout_count = max(1, int(len(order) * holdout_fraction))
    held, train = order[:holdout_count], order[holdout_count:]
    if len(train) < max(2, needed):  # two rows at least: one centred row has no scale
        raise ValueError(f"Found {len(source_ids)} shared tokens between the two tokenizers; holding out {holdout_count} (holdout_fraction {holdout_fraction}) "
                         f"leaves {len(train)} to fit, and method {method!r} needs at least {max(2, needed)}: lower holdout_fraction "
                         "or min_anchors.")  # fmt: skip
    source_rows, target_rows = embed_token_ids(source_table, source_ids), embed_token_ids(target_table, target_ids)
    source_mean, source_scale = _centre_scale(source_rows[train])
    target_mean, target_scale = _centre_scale(target_rows[train])
    for side, scale in (("source", source_scale), ("target", target_scale)):
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"the {side} model's anchor embeddings are all the same row (or not finite: mean distance to "
                             f"their mean {scale!r}), so no map can be fitted from them.")  # fmt: skip
    weight = _solve(method, ((source_rows[train] - source_mean) / source_scale).double(),
                    ((target_rows[train] - target_mean) / target_scale).double(), ridge).float()  # fmt: skip
    token_norm = target_rows[train].norm(dim=1).mean().item() if row_norm == "target_tokens" else None
    projection = PromptProjection(weight, source_mean, target_mean, source_scale, target_scale, row_norm=token_norm)
    held = held[:max_eval]
    projected = projection.project(source_rows[held])
    cosine = torch.nn.functional.cosine_similarity(projected - target_mean, target_rows[held] - target_mean).mean().item()
    top1, top10 = _retrieval(projected, target_ids[held], target_table, target_mean)
    projection.info = {
        "method": method, "ridge": ridge if method == "lstsq" else None, "lowercase": lowercase, "seed": seed, "row_norm_mode": row_norm,
        "num_anchors": len(source_ids), "num_fit": len(train), "num_heldout": holdout_count,
        "quality": {"mean_cosine": cosine, "top1": top1, "top10": top10, "evaluated": len(held)},
        "source_fingerprint": base_model_fingerprint(source_model), "target_fingerprint": base_model_fingerprint(target_model),
        "fit_seconds": time.perf_counter() - began,
    }  # fmt: skip
    return projection
