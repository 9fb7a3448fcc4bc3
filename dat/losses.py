"""Loss terms of DAT (paper Eq. 9, 11, 12) as per-example tensors plus the scalar ``loss`` that is optimised."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dat.models import energy


def at_ce(logits_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Adversarial cross-entropy, paper Eq. 11: -log p(y | x_adv).

    Args:
        logits_adv: (N, K) logits of the adversarial examples.
        y: (N,) int64 true labels.

    Returns:
        (N,) float per-example loss.
    """
    return F.cross_entropy(logits_adv, y, reduction="none")


def bce_energy(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> dict[str, torch.Tensor]:
    """The AT-based EBM loss, paper Eq. 9, with s(x) = -E(x) = logsumexp_k f(x)[k] as the BCE logit.

    Real data is the positive class and contrastive samples the negative class:
    -log sigmoid(s(x_real)) = softplus(-s(x_real)) and -log(1 - sigmoid(s(x_T))) = softplus(s(x_T)).
    Its gradient is Eq. 7: the EBM gradient with the saturating weights 1 - sigmoid(-E) and sigmoid(-E).

    Args:
        logits_real: (B, K) logits of real images (mild augmentation).
        logits_fake: (M, K) logits of contrastive samples x_T.

    Returns:
        ``bce_real`` (B,), ``bce_fake`` (M,) per-example terms and ``bce`` the scalar mean over all B + M
        examples (``BCEWithLogits`` with mean reduction over the concatenated batch).
    """
    bce_real = F.softplus(energy(logits_real))  # softplus(-s) with s = -E
    bce_fake = F.softplus(-energy(logits_fake))  # softplus(s)
    return {"bce_real": bce_real, "bce_fake": bce_fake, "bce": torch.cat([bce_real, bce_fake]).mean()}


def dat_loss(
    logits_adv: torch.Tensor,
    y: torch.Tensor,
    logits_real: torch.Tensor | None = None,
    logits_fake: torch.Tensor | None = None,
    *,
    weight_ce: float = 1.0,
    weight_bce: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The DAT objective, paper Eq. 12: L = weight_ce * L_AT-CE + weight_bce * L_BCE.

    With ``logits_real``/``logits_fake`` omitted this is the stage-1 loss (standard adversarial training).

    Returns:
        ``ce_adv`` (N,), and when the BCE branch is given ``bce_real`` (B,), ``bce_fake`` (M,), ``bce`` (scalar);
        ``loss`` is the scalar optimised.
    """
    out = {"ce_adv": at_ce(logits_adv, y)}
    loss = weight_ce * out["ce_adv"].mean()
    if logits_real is not None and logits_fake is not None:
        out.update(bce_energy(logits_real, logits_fake))
        loss = loss + weight_bce * out["bce"]
    out["loss"] = loss
    return out
