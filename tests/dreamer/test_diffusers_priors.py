"""The diffusers adapters on tiny, randomly initialised pipelines that the test builds and saves
itself with the real diffusers / transformers classes: nothing is downloaded."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from render.dreamer.priors import IFPixelPrior, SDLatentPrior, load_prior  # noqa: E402
from render.dreamer.sds import score_distillation_loss  # noqa: E402

WORDS = ["a", "red", "cube", "blue", "sphere", "dog"]


def _tokenizer(path, max_length=12):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                                unk_token="<unk>", model_max_length=max_length)  # fmt: skip
    return fast


def _saved(pipe, path):
    pipe.save_pretrained(path)
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.eval()  # freshly built modules are in training mode (T5's dropout)
    return pipe


def _if_pipeline(path):
    torch.manual_seed(0)
    text = transformers.T5EncoderModel(transformers.T5Config(vocab_size=len(WORDS) + 3, d_model=32, d_ff=37, d_kv=8,
                                                             num_layers=1, num_heads=4))  # fmt: skip
    unet = diffusers.UNet2DConditionModel(
        sample_size=16, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        in_channels=3, out_channels=6, cross_attention_dim=32, encoder_hid_dim=32, attention_head_dim=8,
        addition_embed_type="text", addition_embed_type_num_heads=2, cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift", act_fn="gelu", norm_num_groups=8,
    )  # fmt: skip
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                    variance_type="learned_range")  # fmt: skip
    pipe = diffusers.IFPipeline(tokenizer=_tokenizer(path), text_encoder=text, unet=unet, scheduler=sched,
                                safety_checker=None, feature_extractor=None, watermarker=None,
                                requires_safety_checker=False)  # fmt: skip
    return _saved(pipe, path)


def _sd_pipeline(path):
    torch.manual_seed(0)
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(WORDS) + 3, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
        max_position_embeddings=12, projection_dim=32, pad_token_id=0, eos_token_id=1, bos_token_id=1))  # fmt: skip
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                                  down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2,
                                  norm_num_groups=8, sample_size=16)  # fmt: skip
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4,
    )  # fmt: skip
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                    beta_schedule="scaled_linear")  # fmt: skip
    pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=_tokenizer(path), unet=unet,
                                             scheduler=sched, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)  # fmt: skip
    return _saved(pipe, path)


def _check_guidance(prior, pipe, x_t, t, channels):
    """eps_hat at guidance s = eps_u + s (eps_c - eps_u), with the two branches computed directly from
    the pipeline's own prompt encoding (``encode_prompt``) and U-Net."""
    kw = {"clean_caption": False} if isinstance(prior, IFPixelPrior) else {}
    if isinstance(prior, IFPixelPrior):
        cond, uncond = pipe.encode_prompt("a red cube", do_classifier_free_guidance=True, num_images_per_prompt=1,
                                          device="cpu", negative_prompt="", **kw)  # fmt: skip
    else:
        cond, uncond = pipe.encode_prompt("a red cube", "cpu", 1, True, negative_prompt="")
    with torch.no_grad():
        e_c = pipe.unet(x_t, t, encoder_hidden_states=cond.expand(len(x_t), -1, -1)).sample[:, :channels]
        e_u = pipe.unet(x_t, t, encoder_hidden_states=uncond.expand(len(x_t), -1, -1)).sample[:, :channels]
        for s in (1.0, 4.0):
            torch.testing.assert_close(prior.predict_noise(x_t, t, "a red cube", s), e_u + s * (e_c - e_u),
                                       atol=1e-4, rtol=1e-4)  # fmt: skip
    assert (e_c - e_u).abs().max() > 1e-6


def test_if_pixel_prior(tmp_path):
    pipe = _if_pipeline(tmp_path / "if")
    prior = load_prior(tmp_path / "if", "pixel")
    assert isinstance(prior, IFPixelPrior) and not prior.builtin and prior.image_size == 16
    torch.testing.assert_close(prior.alphas_cumprod, pipe.scheduler.alphas_cumprod.double())
    rgb = torch.rand(2, 3, 24, 24, requires_grad=True)
    x = prior.encode(rgb)
    assert x.shape == (2, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    x_t, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 900])
    _check_guidance(prior, pipe, x_t, t, 3)  # 6 output channels: eps is the first 3
    out = score_distillation_loss(x, lambda xt, tt: prior.predict_noise(xt, tt, "a red cube", 7.5),
                                  prior.alphas_cumprod, torch.tensor([500, 500]))  # fmt: skip
    out.loss.backward()
    assert rgb.grad is not None and torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0


def test_sd_latent_prior(tmp_path):
    pipe = _sd_pipeline(tmp_path / "sd")
    prior = load_prior(tmp_path / "sd", "latent")
    assert isinstance(prior, SDLatentPrior) and prior.image_size == 16  # 8 latents x 2 (two VAE levels)
    rgb = torch.rand(2, 3, 16, 16, requires_grad=True)
    z = prior.encode(rgb)
    with torch.no_grad():
        ref = pipe.vae.encode(rgb.detach() * 2 - 1).latent_dist.mean * pipe.vae.config.scaling_factor
    torch.testing.assert_close(z.detach(), ref)
    _check_guidance(prior, pipe, torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), 4)
    out = score_distillation_loss(z, lambda xt, tt: prior.predict_noise(xt, tt, "a blue sphere", 7.5),
                                  prior.alphas_cumprod, torch.tensor([300, 700]))  # fmt: skip
    out.loss.backward()
    assert torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0  # through the VAE encoder


def test_a_broken_pipeline_folder_is_one_line(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model_index.json").write_text('{"_class_name": "IFPipeline"}')
    with pytest.raises(ValueError, match="bad: cannot load a DeepFloyd IF pipeline"):
        load_prior(tmp_path / "bad", "pixel")
