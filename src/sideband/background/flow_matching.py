"""Conditional flow matching for SIGMA: the velocity network, its loss and exact likelihood.

Time runs from data (t = 0) to a standard normal (t = 1) along
x_t = (1 - t) x_0 + (σ_min + (1 - σ_min) t) ε, whose velocity is u = (1 - σ_min) ε - x_0.
`VelocityNet` regresses u given (x_t, t, m) (`cfm_loss`); `flow_nll` integrates the ODE with
zuko's adaptive Dormand-Prince solver together with the exact divergence, giving
-log p(x_0 | m) = -log N(x_1) - ∫_0^1 ∇·v dt. `Conditioning` chooses, per event, the data model
at m or SIGMA's interpolation between two anchor masses (see `sideband.background.sigma`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import zuko
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "SIGMA_MIN",
    "Activation",
    "Conditioning",
    "Interpolation",
    "VelocityNet",
    "cfm_loss",
    "divergence",
    "flow_nll",
]

SIGMA_MIN = 1e-4
Interpolation = Literal["context", "linear", "none"]
Activation = Literal["silu", "relu"]
ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU}


class _ResidualBlock(nn.Module):
    """h -> h + φ(h) * sigmoid(W γ_c): nflows' ResidualBlock with a gating context."""

    def __init__(
        self, width: int, dropout: float, batch_norm: bool, activation: type[nn.Module]
    ) -> None:
        super().__init__()
        self.act = activation()
        self.norm_in = nn.BatchNorm1d(width, eps=1e-3) if batch_norm else nn.Identity()
        self.linear_in = nn.Linear(width, width)
        self.norm_mid = nn.BatchNorm1d(width, eps=1e-3) if batch_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.linear_out = nn.Linear(width, width)
        self.gate = nn.Linear(width, width)
        # Near-zero last layer (as nflows): each block starts close to the identity.
        nn.init.uniform_(self.linear_out.weight, -1e-3, 1e-3)
        nn.init.uniform_(self.linear_out.bias, -1e-3, 1e-3)

    def forward(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        r = self.linear_in(self.act(self.norm_in(h)))
        r = self.linear_out(self.dropout(self.act(self.norm_mid(r))))
        return h + r * torch.sigmoid(self.gate(context))


class VelocityNet(nn.Module):
    """SIGMA's velocity field v(x, t, m): (B, d), (B, 1), (B, 1) -> (B, d).

    m is the mass rescaled to [-1, 1]; `embed` and `head` split the network where the
    "context" interpolation acts.
    """

    def __init__(
        self,
        features: int,
        hidden: int = 128,
        n_blocks: int = 4,
        mass_frequencies: int = 9,
        time_frequencies: int = 3,
        dropout: float = 0.0,
        batch_norm: bool = False,
        activation: Activation = "silu",
    ) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.register_buffer(
            "mass_freq", math.pi * 2.0 ** torch.arange(mass_frequencies, dtype=torch.float32)
        )
        self.register_buffer(
            "time_freq", math.pi * torch.arange(1, time_frequencies + 2, dtype=torch.float32)
        )
        n_embed = 1 + 2 * mass_frequencies + 2 * (time_frequencies + 1)
        self.context_net = nn.Sequential(nn.Linear(n_embed, hidden), act())
        self.input_net = nn.Sequential(nn.Linear(features + n_embed, hidden), act())
        self.blocks = nn.ModuleList(
            _ResidualBlock(hidden, dropout, batch_norm, act) for _ in range(n_blocks)
        )
        self.output = nn.Linear(hidden, features)

    def embed(
        self, x: torch.Tensor, t: torch.Tensor, m: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Input and context vectors (γ_i, γ_c), each (B, hidden)."""
        a = torch.cat([m, torch.sin(m * self.mass_freq), torch.cos(m * self.mass_freq)], dim=1)
        b = torch.cat([torch.sin(t * self.time_freq), torch.cos(t * self.time_freq)], dim=1)
        ab = torch.cat([a, b], dim=1)
        return self.input_net(torch.cat([x, ab], dim=1)), self.context_net(ab)

    def head(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Velocity (B, d) from the input and context vectors."""
        for block in self.blocks:
            h = block(h, context)
        return self.output(h)

    def forward(self, x: torch.Tensor, t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.head(*self.embed(x, t, m))


class Conditioning:
    """Per-event mass conditioning: v at m, or interpolated between anchors m_2 < m < m_1.

    ``m`` (B, 1) are the scaled masses; ``sr`` (B,) bool marks the rows interpolated, with
    ``m_hi``, ``m_lo`` (scaled anchors) and ``xi`` (weights), each (n_sr, 1). Rows outside the SR
    take one evaluation of the data model, SR rows two half-network evaluations ("context") or
    two network evaluations ("linear").
    """

    def __init__(
        self,
        mode: Interpolation,
        m: torch.Tensor,
        sr: torch.Tensor | None = None,
        m_hi: torch.Tensor | None = None,
        m_lo: torch.Tensor | None = None,
        xi: torch.Tensor | None = None,
    ) -> None:
        self.mode = mode if sr is not None and bool(sr.any()) else "none"
        self.m, self.sr, self.m_hi, self.m_lo, self.xi = m, sr, m_hi, m_lo, xi
        self.all_sr = self.mode != "none" and bool(sr.all())  # type: ignore[union-attr]

    def _interpolated(self, net: VelocityNet, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        xi, m_hi, m_lo = self.xi, self.m_hi, self.m_lo
        if self.mode == "linear":
            return xi * net(x, t, m_hi) + (1 - xi) * net(x, t, m_lo)  # type: ignore[operator]
        hi_i, hi_c = net.embed(x, t, m_hi)  # type: ignore[arg-type]
        lo_i, lo_c = net.embed(x, t, m_lo)  # type: ignore[arg-type]
        return net.head(xi * hi_i + (1 - xi) * lo_i, xi * hi_c + (1 - xi) * lo_c)  # type: ignore[operator]

    def velocity(self, net: VelocityNet, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = t.reshape(1, 1).to(x.dtype).expand(x.shape[0], 1)
        if self.mode == "none":
            return net(x, tt, self.m)
        if self.all_sr:
            return self._interpolated(net, x, tt)
        sr = self.sr
        out = torch.empty_like(x)
        out[~sr] = net(x[~sr], tt[~sr], self.m[~sr])  # type: ignore[operator]
        out[sr] = self._interpolated(net, x[sr], tt[sr])
        return out


def cfm_loss(
    net: VelocityNet,
    x0: torch.Tensor,
    m: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
) -> torch.Tensor:
    """Conditional flow-matching loss, mean over events and features."""
    xt = (1 - t) * x0 + (SIGMA_MIN + (1 - SIGMA_MIN) * t) * eps
    target = (1 - SIGMA_MIN) * eps - x0
    return (net(xt, t, m) - target).pow(2).mean()


def divergence(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Exact ∇·v (B,) by one backward pass per feature (v, x: (B, d), v built from x)."""
    div = torch.zeros(x.shape[0], dtype=v.dtype, device=v.device)
    for i in range(x.shape[1]):
        (g,) = torch.autograd.grad(v[:, i].sum(), x, retain_graph=i < x.shape[1] - 1)
        div = div + g[:, i]
    return div


def flow_nll(
    net: VelocityNet, x0: torch.Tensor, cond: Conditioning, atol: float, rtol: float
) -> torch.Tensor:
    """-log p(x_0 | m) (B,) in the preprocessed space: ODE from t = 0 to 1 with ∫ ∇·v dt."""

    def f(t: torch.Tensor, x: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            v = cond.velocity(net, x, t)
            div = divergence(v, x)
        return v.detach(), div.detach()

    zero = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
    x1, integral = zuko.utils.odeint(f, (x0, zero), 0.0, 1.0, atol=atol, rtol=rtol)
    d = x0.shape[1]
    log_base = -0.5 * x1.pow(2).sum(dim=1) - 0.5 * d * math.log(2 * math.pi)
    return -(log_base + integral)
