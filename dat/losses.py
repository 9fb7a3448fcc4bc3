"""Loss terms of DAT (paper Eq. 9, 11, 12) and of the baselines (RATIO, JEM, EB-JDAT) as per-example tensors plus
the scalar ``loss`` that is optimised."""

from __future__ import annotations

import math

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


# -- baselines (issue: same pipeline, same data, same evaluation) ------------------------------------------------
def kl_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(U || p(.|x)) per example, U uniform over the K classes: -log K - mean_k log p_k (>= 0, 0 iff p = U).

    Args:
        logits: (N, K).

    Returns:
        (N,) float, in nats.
    """
    return -math.log(logits.shape[1]) - logits.log_softmax(1).mean(1)


def ratio_loss(logits_adv: torch.Tensor, y: torch.Tensor, logits_out_adv: torch.Tensor, *,
               lam: float = 1.0) -> dict[str, torch.Tensor]:
    """RATIO (Augustin et al. 2020, Eq. 4): 0.5 * CE(f(x_adv), y) + 0.5 * lam * KL(U || p(.|x_out_adv)).

    ``x_out_adv`` is an out-distribution image moved within its L2 ball to maximise that KL (to be confident), so
    the loss teaches low confidence on the whole neighbourhood of OOD inputs.

    Returns:
        ``ce_adv`` (N,), ``kl_out`` (M,) per-example terms and the scalar ``loss``.
    """
    ce = at_ce(logits_adv, y)
    kl = kl_uniform(logits_out_adv)
    return {"ce_adv": ce, "kl_out": kl, "loss": 0.5 * ce.mean() + 0.5 * lam * kl.mean()}


def jem_loss(logits_lab: torch.Tensor, y: torch.Tensor, logits_data: torch.Tensor, logits_q: torch.Tensor, *,
             weight_px: float = 1.0, weight_pyx: float = 1.0) -> dict[str, torch.Tensor]:
    """JEM (Grathwohl et al. 2020, Eq. 5 and Sec. 4): weight_pyx * CE(f(x_lab), y) + weight_px * (E(x_data) - E(x_q)),
    E(x) = -logsumexp f(x). The second term is the contrastive estimate of -grad log p(x) with SGLD samples x_q.

    Args:
        logits_lab: (N, K) logits of labelled images; y (N,) their labels.
        logits_data: (B, K) logits of data images (a second batch of the training set).
        logits_q: (M, K) logits of SGLD samples.

    Returns:
        ``ce`` (N,), ``energy_data`` (B,), ``energy_q`` (M,), ``px`` (scalar E(x_data).mean() - E(x_q).mean()),
        and the scalar ``loss``.
    """
    ce = F.cross_entropy(logits_lab, y, reduction="none")
    e_data, e_q = energy(logits_data), energy(logits_q)
    px = e_data.mean() - e_q.mean()
    return {"ce": ce, "energy_data": e_data, "energy_q": e_q, "px": px,
            "loss": weight_pyx * ce.mean() + weight_px * px}


def ebjdat_loss(logits_lab: torch.Tensor, y: torch.Tensor, logits_data: torch.Tensor, logits_q: torch.Tensor,
                logits_adv: torch.Tensor, *, weight_px: float, weight_pyx: float, weight_xadv: float,
                weight_pyxadv: float) -> dict[str, torch.Tensor]:
    """EB-JDAT (Yang et al.; the objective of its public JEM-variant code):
    w_px [LSE(x_q) - LSE(x_p)] + w_pyx CE(f(x_lab), y) + w_xadv [LSE(x_adv) - LSE(x_p)] + w_pyxadv CE(f(x_adv), y),
    LSE(x) = logsumexp f(x) = -E(x). The adversarial term treats x_adv like a model sample of the clean data
    distribution (lower its density relative to data), the last term is adversarial training.

    Args:
        logits_lab: (N, K) labelled images, y (N,); logits_data (B, K) data images x_p; logits_q (M, K) SGLD
            samples; logits_adv (N, K) adversarial versions of the labelled images.

    Returns:
        ``ce`` (N,), ``ce_adv`` (N,), ``px``, ``pxadv`` (scalars) and the scalar ``loss``.
    """
    lse_data = -energy(logits_data)
    px = -energy(logits_q).mean() - lse_data.mean()
    pxadv = -energy(logits_adv).mean() - lse_data.mean()
    ce = F.cross_entropy(logits_lab, y, reduction="none")
    ce_adv = at_ce(logits_adv, y)
    loss = weight_px * px + weight_pyx * ce.mean() + weight_xadv * pxadv + weight_pyxadv * ce_adv.mean()
    return {"ce": ce, "ce_adv": ce_adv, "px": px, "pxadv": pxadv, "loss": loss}
