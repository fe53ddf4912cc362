"""Exact answers for Gaussian-mixture data: noised density, score and optimal denoiser.

Under a Gaussian path x_t = alpha x0 + sigma noise, data drawn from sum_k w_k N(m_k, C_k)
has the marginal

    p_t(x) = sum_k w_k N(x; alpha m_k, alpha^2 C_k + sigma^2 I),

because a linear map of a Gaussian plus independent Gaussian noise is Gaussian. With
S_k = alpha^2 C_k + sigma^2 I and the responsibilities r_k(x) = w_k N_k(x) / p_t(x):

    score      grad log p_t(x) = sum_k r_k S_k^-1 (alpha m_k - x)
    denoiser   E[x0 | x_t = x] = sum_k r_k (m_k + alpha C_k S_k^-1 (x - alpha m_k))

(the per-component posterior mean is the Gaussian conditioning formula; Tweedie's formula
E[x0 | x] = (x + sigma^2 score) / alpha gives the same for alpha > 0, Efron 2011). eps, v and
velocity follow through `diffusion.parametrize`. With C_k = U_k diag(lambda_k) U_k^T, S_k is
diagonal in the same axes, so everything costs O(K D) per point after one projection, and
the log-sum-exp over components keeps it stable far from every mode.

`Oracle.points(x)` is the empirical optimal denoiser of a finite training set (every point a
zero-variance component): what a network that memorises its data perfectly would output
(see e.g. Karras et al. 2022, Sec. 5, and smalldiffusion's "ideal denoiser").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffusion.data.mixture import GaussianMixture
from diffusion.parametrize import Prediction, target_from
from diffusion.processes.guidance import check_labels, guidance_scales
from diffusion.utils import expand_like

# Entries of the largest (B, K, D) temporary: batches are split so it stays ~64 MiB in float64.
_CHUNK_ELEMENTS = 2**23


@dataclass(frozen=True)
class Exact:
    """Exact quantities at points x_t (B, D) and times t (B,)."""

    log_prob: torch.Tensor  # (B,) log p_t(x_t)
    score: torch.Tensor  # (B, D) grad log p_t(x_t)
    x0: torch.Tensor  # (B, D) E[x0 | x_t]
    eps: torch.Tensor  # (B, D) E[eps | x_t] = -sigma score (Vincent 2011)


class Oracle:
    """The exact marginals of a Gaussian mixture under a Gaussian-path process.

    Args:
        mixture: the data law, in the process's coordinates (see `GaussianMixture.affine`).
        process: any process with Gaussian marginals (not Poisson flow); None for an oracle
            used only through `exact_at` (alpha and sigma given directly). The answer is
            always that of the Gaussian path, i.e. of data paired with independent noise: a
            network trained with a coupling (flow matching's "ot") learns another field, and
            comparing it with this one measures that difference too.
        dtype: precision of the computation; results come back in the input's dtype unless
            the input is already float64.
    """

    def __init__(
        self, mixture: GaussianMixture, process=None, dtype: torch.dtype = torch.float64
    ) -> None:
        if process is not None and not process.gaussian:
            raise ValueError(
                f"the exact oracle needs Gaussian marginals, which {type(process).__name__} "
                "does not have"
            )
        self.mixture = mixture
        self.process = process
        self.dtype = dtype
        self._cache: dict[torch.device, tuple] = {}
        lam = mixture.eigenvalues
        self._isotropic = mixture.axes is None and bool((lam == lam[:, :1]).all())

    @classmethod
    def points(cls, points: torch.Tensor, process, dtype: torch.dtype = torch.float64) -> Oracle:
        """The empirical optimal denoiser of a finite set (N, D): perfect memorisation."""
        return cls(GaussianMixture.points(points), process, dtype)

    def _tensors(self, device: torch.device):
        if device not in self._cache:
            m = self.mixture
            axes = None if m.axes is None else m.axes.to(device, self.dtype)
            self._cache[device] = (
                m.weights.log().to(device, self.dtype),
                m.means.to(device, self.dtype),
                m.eigenvalues.to(device, self.dtype),
                axes,
            )
        return self._cache[device]

    def _times(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(
            t, dtype=torch.float64 if isinstance(t, float) else None, device=x.device
        )
        return t.to(torch.float64).expand(x.shape[0]) if t.ndim == 0 else t.to(torch.float64)

    def exact(self, x: torch.Tensor, t: torch.Tensor | float) -> Exact:
        """log p_t, the score, E[x0 | x_t] and E[eps | x_t] at x (B, D), t (scalar or (B,))."""
        t = self._times(t, x)
        return self.exact_at(x, self.process.alpha(t), self.process.sigma(t))

    def exact_at(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> Exact:
        """The same at x (B, D) for the path coefficients alpha, sigma (B,) themselves."""
        out_dtype = x.dtype
        alpha, sigma, x = alpha.to(self.dtype), sigma.to(self.dtype), x.to(self.dtype)
        step = max(1, _CHUNK_ELEMENTS // max(1, self.mixture.n_components * self.mixture.dim))
        parts = [
            self._exact(x[i : i + step], alpha[i : i + step], sigma[i : i + step])
            for i in range(0, x.shape[0], step)
        ]
        log_prob, score, x0 = (torch.cat(p) for p in zip(*parts, strict=True))
        eps = -sigma[:, None] * score
        return Exact(*(v.to(out_dtype) for v in (log_prob, score, x0, eps)))

    def _exact(self, x, alpha, sigma):
        log_w, means, lam, axes = self._tensors(x.device)
        if self._isotropic:
            return self._exact_isotropic(x, alpha, sigma, log_w, means, lam[:, 0])
        a = alpha[:, None, None]  # (B, 1, 1)
        diff = x[:, None, :] - a * means[None]  # (B, K, D) x - alpha m_k
        if axes is not None:  # into each component's axes: U_k^T (x - alpha m_k)
            diff = torch.einsum("kde,bkd->bke", axes, diff)
        var = a**2 * lam[None] + sigma[:, None, None] ** 2  # (B, K, D) diagonal of S_k
        whitened = diff / var  # S_k^-1 (x - alpha m_k), in the axes
        log_norm = -0.5 * (var.log().sum(-1) + (diff * whitened).sum(-1))  # (B, K)
        logits = log_w[None] + log_norm - 0.5 * x.shape[1] * math.log(2 * math.pi)
        log_prob = torch.logsumexp(logits, dim=1)  # (B,)
        r = torch.softmax(logits, dim=1)[:, :, None]  # (B, K, 1) responsibilities
        score = -(r * whitened)  # (B, K, D) per component, still in the axes
        shrink = a * lam[None] * whitened  # alpha C_k S_k^-1 (x - alpha m_k), in the axes
        if axes is not None:  # back to the data axes
            score = torch.einsum("kde,bke->bkd", axes, score)
            shrink = torch.einsum("kde,bke->bkd", axes, shrink)
        x0 = (r * (means[None] + shrink)).sum(1)  # (B, D)
        return log_prob, score.sum(1), x0

    def _exact_isotropic(self, x, alpha, sigma, log_w, means, lam):
        """The same for components s_k^2 I (e.g. a data set's points) in O(B K) memory: the
        squared distances come from one matrix product, |x|^2 - 2 alpha x.m + alpha^2 |m|^2."""
        d = x.shape[1]
        a = alpha[:, None]  # (B, 1)
        var = a**2 * lam[None] + sigma[:, None] ** 2  # (B, K) the variance of S_k
        sq = ((x * x).sum(1, keepdim=True) - 2 * a * (x @ means.T)
              + a**2 * (means * means).sum(1)[None]).clamp_min(0)  # (B, K)  # fmt: skip
        logits = log_w[None] - 0.5 * (d * var.log() + sq / var) - 0.5 * d * math.log(2 * math.pi)
        log_prob = torch.logsumexp(logits, dim=1)  # (B,)
        r = torch.softmax(logits, dim=1)  # (B, K) responsibilities
        w = r / var  # (B, K)
        score = a * (w @ means) - w.sum(1, keepdim=True) * x  # sum_k r_k (alpha m_k - x) / v_k
        g = a * w * lam[None]  # (B, K) alpha r_k s_k^2 / v_k
        x0 = r @ means + g.sum(1, keepdim=True) * x - a * (g @ means)  # (B, D)
        return log_prob, score, x0

    def log_prob(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """(B,) log p_t(x)."""
        return self.exact(x, t).log_prob

    def score(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """(B, D) grad_x log p_t(x)."""
        return self.exact(x, t).score

    def x0(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """(B, D) E[x0 | x_t = x], the optimal denoiser."""
        return self.exact(x, t).x0

    def target(self, name: str, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """The exact value of prediction target `name` (eps, x0, v, velocity, score): the
        minimiser of that target's regression loss, E[target | x_t]."""
        t = self._times(t, x)
        exact = self.exact(x, t)
        if name == "score":
            return exact.score
        alpha, sigma, d_alpha, d_sigma = (
            expand_like(c.to(x.dtype), x)
            for c in (
                self.process.alpha(t), self.process.sigma(t),
                self.process.d_alpha(t), self.process.d_sigma(t),
            )
        )  # fmt: skip
        return target_from(name, exact.x0, exact.eps, alpha, sigma, d_alpha, d_sigma)

    def denoiser(self) -> OracleDenoiser:
        """This oracle seen as a denoiser: plugs into every sampler where a network would."""
        return OracleDenoiser(self)


class OracleDenoiser:
    """The exact E[x0 | x_t] and E[eps | x_t] with the `Denoiser` interface (counts NFE)."""

    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle
        self.process = oracle.process
        self.dtype = oracle.dtype  # the precision the oracle computes in
        self.nfe = 0

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        with torch.no_grad():
            return self.predict(x_t, t)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        """The exact prediction, differentiable in x_t."""
        self.nfe += 1
        exact = self.oracle.exact(x_t, t)
        return Prediction(x0=exact.x0, eps=exact.eps)


class GuidedOracleDenoiser(OracleDenoiser):
    """The exact classifier-free-guided prediction (`diffusion.processes.guidance`) for a
    mixture whose classes are its components or groups of them (`GaussianMixture.classes`):
    x0_w = x0_u + w (x0_c - x0_u) and the same for eps, with x0_u from the whole mixture and
    x0_c from the class's own components, at every t exactly. w = 1 is exact conditional
    sampling, w = 0 exact unconditional sampling.

    Args:
        oracle: the oracle of the whole mixture.
        label: (B,) the class of each sample.
        scale: the guidance scale w.
        interval: (low, high) noise levels sigma / alpha where w applies (1 elsewhere).
    """

    def __init__(
        self,
        oracle: Oracle,
        label: torch.Tensor,
        scale: float,
        interval: tuple[float, float] | None = None,
    ) -> None:
        mixture = oracle.mixture
        check_labels(label, mixture.n_classes)
        super().__init__(oracle)
        self.label, self.scale, self.interval = label.long(), float(scale), interval
        self.classes = [Oracle(mixture.class_mixture(c), oracle.process, oracle.dtype)
                        for c in range(mixture.n_classes)]  # fmt: skip

    def predict(self, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        self.nfe += 1
        t = self.oracle._times(t, x_t)
        label = self.label.to(x_t.device)
        whole = self.oracle.exact(x_t, t)
        x0, eps = whole.x0.clone(), whole.eps.clone()
        for k in torch.unique(label).tolist():
            rows = label == k
            own = self.classes[k].exact(x_t[rows], t[rows])
            x0[rows], eps[rows] = own.x0, own.eps
        w = guidance_scales(self.process, t, self.scale, self.interval)
        w = w.to(x_t.dtype)[:, None]
        return Prediction(x0=whole.x0 + w * (x0 - whole.x0), eps=whole.eps + w * (eps - whole.eps))
