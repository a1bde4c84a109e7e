import json
import sys
from pathlib import Path

import pytest


def test_dream_eval_refuses_to_replace_runs_made_with_other_settings(tmp_path, capsys):
    """One benchmark command must not silently wipe another's results: an --out made with other
    settings is a one-line error naming what differs, unless --restart."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "bench"))
    try:
        import dream_eval
    finally:
        sys.path.pop(0)
    out = tmp_path / "eval.json"
    old = {"settings": {"steps": 300, "guidance": 5.0, "prompts": "heldout", "overrides": {}, "judge": 1,
                        "prior_sha256": {}, "code_sha256": "x"}, "runs": {"anneal2/a red cylinder/0": {}}}  # fmt: skip
    out.write_text(json.dumps(old))
    with pytest.raises(SystemExit) as exc:
        dream_eval.main(["--arms", "anneal1", "--seeds", "0", "--steps", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"--out {out}: holds runs made with other settings" in err
    assert "code_sha256" in err and "judge" in err and "steps" in err
    assert json.loads(out.read_text()) == old  # untouched


def _dream_eval():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "bench"))
    try:
        import dream_eval
    finally:
        sys.path.pop(0)
    return dream_eval


def test_dream_eval_evaluates_the_prior_file_it_is_given(tmp_path, capsys, monkeypatch):
    """``--set prior=FILE`` runs every arm with that file's weights (it was once silently ignored),
    records its hash, and a wrong file is a one-line error naming it."""
    import hashlib

    import torch

    from render.dreamer.scenes import all_prompts
    from render.dreamer.tiny_prior import BUILTIN, TinyPrior, TinyPriorConfig

    dream_eval = _dream_eval()
    torch.manual_seed(0)
    weights = tmp_path / "my_pixel_prior.safetensors"
    mine = TinyPrior(TinyPriorConfig(channels=[8, 16, 16], emb_dim=16))
    mine.save(weights, {"captions": sorted(p.text for p in all_prompts())})
    saved = {k: v.half().float() for k, v in mine.unet.state_dict().items()}  # stored in fp16
    latent = tmp_path / "my_latent_prior.safetensors"
    TinyPrior(TinyPriorConfig(channels=[8, 16, 16], emb_dim=16, space="latent")).save(latent)
    used = []

    class Recording(dream_eval.Dreamer):
        def __init__(self, cfg, priors):
            used.append(priors[0])
            super().__init__(cfg, priors)

    monkeypatch.setattr(dream_eval, "Dreamer", Recording)
    out = tmp_path / "eval.json"
    argv = ["--arms", "anneal1", "--seeds", "0", "--steps", "2", "--prompts", "train", "--out", str(out)]
    assert dream_eval.main([*argv, "--set", f"prior={weights}"]) == 0
    assert len(used) == 5  # the five validation captions
    for prior in used:
        assert prior.cfg.channels == [8, 16, 16]
        for k, v in prior.unet.state_dict().items():
            assert torch.equal(v, saved[k]), k
    settings = json.loads(out.read_text())["settings"]
    assert settings["prior_sha256"]["pixel"] == hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    assert settings["prior_sha256"]["latent"] == hashlib.sha256(BUILTIN["latent"].read_bytes()).hexdigest()[:16]
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_text("not weights")
    odd = tmp_path / "odd.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(odd), metadata={"config": json.dumps({"channels": [7, 16, 16]})})
    for spec, message in ((latent, "a latent-space prior, but a pixel-space one is needed"),
                          (tmp_path / "missing.safetensors", "no such prior"),
                          (garbage, "not a readable safetensors file"),
                          (odd, "bad 'config' metadata: num_channels (7) must be divisible"),
                          (tmp_path, "a folder; the benchmark takes 'builtin' or a tiny-prior")):  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            dream_eval.main([*argv, "--restart", "--set", f"prior={spec}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and f"--set prior={spec}: " in err[-1] and message in err[-1], err


def test_dream_eval_refuses_priors_that_saw_the_judged_pairs(tmp_path, capsys, monkeypatch):
    """--prompts heldout / unseen-val read the training captions each prior used records: the shipped
    priors saw the unseen-validation pairs (refused), a prior that records no captions is refused, a
    prior trained on a held-out pair is refused, and validation-split priors run."""
    import torch

    from render.dreamer.scenes import VALIDATION_UNSEEN, all_prompts
    from render.dreamer.tiny_prior import TinyPrior, TinyPriorConfig, training_pairs

    dream_eval = _dream_eval()
    small = {"channels": [8, 16, 16], "emb_dim": 16}

    def save(name, space, captions):
        torch.manual_seed(0)
        path = tmp_path / f"{name}.safetensors"
        TinyPrior(TinyPriorConfig(space=space, **small)).save(
            path, None if captions is None else {"captions": captions}
        )
        return path

    split = sorted({p.text for p in all_prompts(exclude=VALIDATION_UNSEEN)}) + ["a small cyan", "a large cube"]
    pix, lat = save("pix", "pixel", split), save("lat", "latent", split)
    assert training_pairs(pix) == {(p.colour, p.shape) for p in all_prompts(exclude=VALIDATION_UNSEEN)}  # no partials
    bare = save("bare", "pixel", None)
    empty = save("empty", "pixel", [])
    leaky = save("leaky", "latent", [*split, "a large red cylinder"])  # a held-out pair
    out = tmp_path / "eval.json"
    base = ["--seeds", "0", "--steps", "2", "--out", str(out), "--restart"]
    cases = [(["--prompts", "unseen-val", "--arms", "anneal2"],
              "the pixel prior", "was trained on cyan cube, magenta cylinder, red sphere"),
             (["--prompts", "unseen-val", "--arms", "anneal1", "--set", f"prior={bare}"],
              "records no training captions", ""),
             (["--prompts", "unseen-val", "--arms", "anneal2", "--set", f"prior={pix}"],
              "the latent prior", "was trained on cyan cube, magenta cylinder, red sphere"),
             (["--prompts", "heldout", "--arms", "fixed2", "--set", f"prior={pix}", f"latent_prior={leaky}"],
              "the latent prior", "was trained on red cylinder; use priors"),
             # a stage-1 arm given a second stage by --set uses the latent prior: checked too
             (["--prompts", "unseen-val", "--arms", "anneal1", "--set", f"prior={pix}", "stage2_fraction=0.3"],
              "the latent prior", "was trained on cyan cube"),
             (["--prompts", "unseen-val", "--arms", "anneal1", "--set", f"prior={empty}"],
              "bad 'captions' metadata: no caption names a colour and a shape", ""),
             (["--prompts", "train", "--arms", "anneal1", "--set", f"prior={pix}"],
              "was not trained on cyan cube", "not validation captions"),
             (["--prompts", "unseen-val", "--arms", "anneal1", "--set", f"prior={pix}", "guidance_mode=bogus"],
              "arm anneal1: ", "guidance_mode: expected joint or composable, got 'bogus'"),
             (["--prompts", "unseen-val", "--arms", "anneal1", "--set", f"prior={pix}", "steps=5"],
              "--set steps: set by the benchmark", "--steps")]  # fmt: skip
    for argv, first, second in cases:
        with pytest.raises(SystemExit) as exc:
            dream_eval.main([*base, *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and first in err[-1] and second in err[-1], (argv, err)
    assert not out.exists()
    # stage 1 only needs no latent prior: the shipped latent prior's captions do not matter there
    runs = []
    monkeypatch.setattr(dream_eval, "judge", lambda model, prompt: runs.append(prompt) or _Verdict())
    assert dream_eval.main([*base, "--prompts", "unseen-val", "--arms", "anneal1", "--set", f"prior={pix}"]) == 0
    # and a two-stage arm whose second stage --set removes needs no latent prior either
    assert dream_eval.main([*base, "--prompts", "unseen-val", "--arms", "anneal2", "--set", f"prior={pix}",
                            "stage2_fraction=0"]) == 0  # fmt: skip
    assert dream_eval.main([*base, "--prompts", "unseen-val", "--arms", "anneal2",
                            "--set", f"prior={pix}", f"latent_prior={lat}", "guidance=2.5"]) == 0  # fmt: skip
    assert [(p.colour, p.shape) for p in runs] == list(VALIDATION_UNSEEN) * 3
    report = json.loads(out.read_text())
    assert {r["config"]["guidance"] for r in report["runs"].values()} == {2.5}  # --set guidance= reaches the run
    assert {r["config"]["guidance2"] for r in report["runs"].values()} == {5.0}


class _Verdict:
    def as_dict(self):
        return {"colour": "red", "shape": "cube", "match": False, "per_view_match": 0.0, "saturation": 0.5}
