"""PSNR against its closed form, SSIM against scikit-image, LPIPS from a local weights file."""

import math

import pytest
import torch

from render.metrics import LPIPS, psnr, ssim


def test_psnr_closed_form():
    a = torch.full((2, 8, 8, 3), 0.5)
    b = a + torch.tensor([0.1, 0.01])[:, None, None, None]
    torch.testing.assert_close(psnr(b, a), torch.tensor([20.0, 40.0]), rtol=1e-4, atol=1e-4)


def test_ssim_matches_skimage():
    skm = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 33, 40, 3, generator=g)
    b = (a + 0.15 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    ours = ssim(b, a)
    for i in range(2):
        ref = skm.structural_similarity(b[i].numpy(), a[i].numpy(), channel_axis=-1, data_range=1.0,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)  # fmt: skip
        assert float(ours[i]) == pytest.approx(ref, abs=1e-5)
    assert float(ssim(a, a).min()) == pytest.approx(1.0, abs=1e-6)


def test_metric_shape_errors():
    with pytest.raises(ValueError, match="images: expected two"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(8, 8, 3), torch.zeros(8, 8, 3))


def test_lpips_from_local_file(tmp_path):
    from worldline.io import save_weights

    torch.manual_seed(0)
    ref = LPIPS()
    for p in ref.parameters():
        p.data.normal_(0, 0.05)
    for lin in ref.lin:
        lin.weight.data.abs_()  # LPIPS heads are non-negative
    sd = {k: v for k, v in ref.state_dict().items() if k not in ("shift", "scale")}
    save_weights(sd, tmp_path / "lpips.safetensors")
    model = LPIPS.from_file(tmp_path / "lpips.safetensors")
    x = torch.rand(2, 64, 64, 3)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    torch.testing.assert_close(model(x, x), torch.zeros(2))
    d = model(x, y)
    assert (d > 0).all()
    torch.testing.assert_close(d, model(y, x))
    torch.testing.assert_close(d, ref(x, y))
    # an independent computation of the distance for the first layer alone
    h = ((x.permute(0, 3, 1, 2) * 2 - 1) - ref.shift) / ref.scale
    fa = torch.relu(ref.features[0](h))
    h2 = ((y.permute(0, 3, 1, 2) * 2 - 1) - ref.shift) / ref.scale
    fb = torch.relu(ref.features[0](h2))
    na, nb = fa / (fa.norm(dim=1, keepdim=True) + 1e-10), fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
    layer0 = ((na - nb) ** 2 * ref.lin[0].weight.view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
    assert (d > layer0).all() and math.isfinite(float(layer0.sum()))
    save_weights({"features.0.weight": torch.zeros(64, 3, 11, 11)}, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="not LPIPS-AlexNet weights"):
        LPIPS.from_file(tmp_path / "bad.safetensors")


def test_no_lpips_weights_gives_null(tmp_path, capsys):
    from render.nerf.evaluate import evaluate

    class Const(torch.nn.Module):
        samples_per_ray = 1

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, o, d):
            n = o.shape[0]
            return {"rgb": torch.full((n, 3), 0.5), "depth": torch.ones(n), "acc": torch.ones(n)}

    from render.datasets.readers import SceneData
    from worldline import Camera

    cams = Camera.from_fov(1.0, 16, 12, w2c=torch.eye(4).expand(2, 4, 4))
    data = SceneData(torch.full((2, 12, 16, 3), 0.6), cams, 0.1, 2.0, None, ["a", "b"], (1.0, 1.0, 1.0), "test", "x")
    res = evaluate(Const(), data, progress=False)
    assert res["lpips"] is None and "lpips: null" in capsys.readouterr().out
    assert res["psnr"] == pytest.approx(20.0, abs=1e-3) and res["samples_per_ray"] == 1
    assert {"psnr", "ssim", "lpips", "num_rays_per_sec", "fps"} <= set(res)
    assert res["num_rays_per_sec"] == pytest.approx(res["fps"] * 16 * 12, rel=1e-6)
