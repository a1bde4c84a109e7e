import math

import pytest
import torch

from render.dreamer.sds import TimeSchedule, score_distillation_loss, sds_weight, x0_reconstruction_loss


def _schedule(T=1000):
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


def _prior(x_t, t):
    # a fixed nonlinear "denoiser": any function of (x_t, t) will do for the identities below
    return torch.tanh(1.3 * x_t + 0.001 * t.double().reshape(-1, 1, 1, 1)) * 0.8


@pytest.mark.parametrize("weighting", ["sds", "uniform", "fantasia"])
def test_sds_gradient_equals_the_x0_reconstruction_gradient(weighting):
    torch.manual_seed(0)
    abar = _schedule()
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([20, 500, 950])
    noise = torch.randn_like(x)
    out = score_distillation_loss(x, _prior, abar, t, noise, weighting)
    (g_sds,) = torch.autograd.grad(out.loss, x)
    # independent of the implementation: the one-step estimate from the definition
    a = abar[t].reshape(-1, 1, 1, 1)
    x_t = a.sqrt() * x.detach() + (1 - a).sqrt() * noise
    x0 = (x_t - (1 - a).sqrt() * _prior(x_t, t)) / a.sqrt()
    torch.testing.assert_close(out.x0_pred, x0)
    (g_x0,) = torch.autograd.grad(x0_reconstruction_loss(x, x0, abar[t], weighting), x)
    torch.testing.assert_close(g_sds, g_x0, rtol=1e-9, atol=1e-12)
    # and both are w(t) (eps_hat - eps) / B
    w = sds_weight(abar[t], weighting).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(g_sds, w * (_prior(x_t, t) - noise) / 3)


def test_sds_weightings_and_nan_and_clip():
    abar = _schedule()
    a = abar[torch.tensor([100])]
    torch.testing.assert_close(sds_weight(a, "sds"), 1 - a)
    torch.testing.assert_close(sds_weight(a, "fantasia"), a.sqrt() * (1 - a))
    with pytest.raises(ValueError, match="weighting"):
        sds_weight(a, "nope")
    x = torch.zeros(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)

    def bad_prior(x_t, t):
        e = torch.full_like(x_t, 50.0)
        e[0, 0, 0, 0] = float("nan")
        return e

    out = score_distillation_loss(x, bad_prior, abar, torch.tensor([999]), torch.zeros_like(x), grad_clip=1.0)
    assert torch.isfinite(out.grad).all() and out.grad[0, 0, 0, 0] == 0
    assert out.grad.abs().max() == 1.0  # clipped
    with pytest.raises(ValueError, match="timesteps"):
        score_distillation_loss(x, bad_prior, abar, torch.tensor([1000]))


def test_time_schedules():
    lin = TimeSchedule("linear")
    assert lin.t_max(0) == pytest.approx(0.98) and lin.t_max(1) == pytest.approx(0.02)
    assert lin.t_max(0.5) == pytest.approx(0.5)
    sq = TimeSchedule("sqrt")
    assert sq.t_max(0.25) == pytest.approx(0.98 - 0.96 * 0.5)
    assert sq.t_max(0.25) < lin.t_max(0.25)  # sqrt falls faster early
    st = TimeSchedule("step", steps=4)
    vals = [st.t_max(p) for p in (0.0, 0.2, 0.3, 0.6, 0.99, 1.0)]
    assert vals[0] == vals[1] == pytest.approx(0.98) and vals[-1] == pytest.approx(0.02)
    assert len(set(round(v, 6) for v in vals)) == 4  # four stages
    fixed = TimeSchedule("fixed")
    assert fixed.t_max(0) == fixed.t_max(1) == pytest.approx(0.98)
    # samples stay in [t_min, t_max(progress)] and cover it
    g = torch.Generator().manual_seed(0)
    for sched in (lin, sq, st, fixed):
        for p in (0.0, 0.37, 0.8, 1.0):
            t = sched.sample(p, 1000, batch=4000, generator=g)
            lo, hi = round(sched.low * 999), round(sched.t_max(p) * 999)
            assert int(t.min()) >= lo and int(t.max()) <= hi
            if hi - lo > 10:
                assert int(t.min()) <= lo + 5 and int(t.max()) >= hi - 5
    # annealing: the mean t falls over training; fixed does not
    means = [lin.sample(p, 1000, 2000, g).double().mean() for p in (0.0, 0.5, 0.9)]
    assert means[0] > means[1] > means[2]
    assert abs(fixed.sample(0.0, 1000, 4000, g).double().mean() - fixed.sample(0.9, 1000, 4000, g).double().mean()) < 20
    with pytest.raises(ValueError, match="time schedule"):
        TimeSchedule("cosine")
    with pytest.raises(ValueError, match="end <= start"):
        TimeSchedule("linear", start=0.1, end=0.5)
    assert math.isclose(TimeSchedule("linear", t_min=0.3).t_max(1.0), 0.3)


def test_bad_timestep_inputs_are_one_line_errors():
    abar = _schedule()
    x = torch.zeros(3, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="expected 1 or 3 timesteps"):
        score_distillation_loss(x, _prior, abar, torch.tensor([5, 6]))
    with pytest.raises(ValueError, match="t_min must be in"):
        TimeSchedule("linear", t_min=1.5)
