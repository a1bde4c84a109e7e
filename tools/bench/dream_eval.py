"""Text-to-3D with the built-in priors, judged independently (``render.dreamer.judge``) on the five
held-out (colour, shape) prompts the priors never saw together. Five arms on the same budget:

- ``anneal2``: linear time annealing (0.98 -> 0.02), two stages (the default of ``render dream``);
- ``fixed2``: t drawn from the fixed range [0.02, 0.98] throughout, two stages (the SDS baseline);
- ``anneal1``: linear annealing, stage 1 (image-space prior) only;
- ``anneal2r``: linear annealing run again within stage 2 (``restart_schedule``), two stages;
- ``fixed1``: the fixed range, stage 1 only.

    python tools/bench/dream_eval.py                          # 5 prompts x 5 arms x 2 seeds
    python tools/bench/dream_eval.py --seeds 0 1 2 --steps 400
    python tools/bench/dream_eval.py --prompts train --set lr_opacities=0.005 --out outputs/bench/dream_val.json

``--prompts train`` judges five *training* captions instead: the validation set on which settings
are chosen, so that the held-out prompts are not used for tuning. ``--prompts unseen-val`` judges
``scenes.VALIDATION_UNSEEN`` (cyan cube, red sphere, magenta cylinder), pairs that only priors
trained with ``tools/train_tiny_prior.py --validation-split`` have not seen: settings for unseen
pairs are chosen there, with those priors (``--set prior=... latent_prior=...``). For both unseen
sets the benchmark reads the training captions each prior used records and refuses to run
if a judged pair is among them; for ``train`` it refuses if one is not. (A check of captions: it
cannot see a pair that training data shows without naming it.) ``--set KEY=VALUE`` overrides a
``DreamConfig`` field in every arm; ``--set prior=FILE`` (or ``latent_prior=FILE``) evaluates
another tiny prior's weights in place of the shipped ones.

Prints a table and writes ``outputs/bench/dream_eval.json``: per run the judge's verdict (colour,
shape, match, saturation, view consistency = per-view match rate); per arm the match count and
mean +- std over seeds. A run already in the JSON is reused only when its full ``DreamConfig``, the
judge's version, the priors' weights and the code of ``render/dreamer`` and
``render/gaussians`` (sha256) are all the same; a JSON made with other settings is an error
(``--restart`` replaces it), so that one command cannot wipe another's results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from render.dreamer.dream import DreamConfig, Dreamer  # noqa: E402
from render.dreamer.judge import JUDGE_VERSION, judge  # noqa: E402
from render.dreamer.priors import load_prior  # noqa: E402
from render.dreamer.scenes import HELD_OUT, VALIDATION_UNSEEN, Prompt  # noqa: E402
from render.dreamer.tiny_prior import BUILTIN, training_pairs  # noqa: E402

VALIDATION = (("red", "cube"), ("blue", "sphere"), ("green", "cylinder"), ("yellow", "sphere"), ("cyan", "cube"))
"""training (colour, shape) pairs for choosing settings"""
from worldline.io import load_json, save_json  # noqa: E402
from worldline.runtime import retain_freed_memory  # noqa: E402

CODE = sorted((ROOT / "render" / "dreamer").glob("*.py")) + sorted((ROOT / "render" / "gaussians").glob("*.py"))
"""the code a run depends on: any change to it redoes the cached runs"""

ARMS = {
    "anneal2": {"schedule": "linear", "stage2_fraction": 0.3},
    "fixed2": {"schedule": "fixed", "stage2_fraction": 0.3},
    "anneal1": {"schedule": "linear", "stage2_fraction": 0.0},
    "anneal2r": {"schedule": "linear", "stage2_fraction": 0.3, "restart_schedule": True},
    "fixed1": {"schedule": "fixed", "stage2_fraction": 0.0},
}


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0) if xs else (float("nan"), 0.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--guidance", type=float, default=5.0, help="both stages (--set guidance=/guidance2= for one)")
    p.add_argument("--prompts", choices=["heldout", "train", "unseen-val"], default="heldout")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="DreamConfig overrides")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/dream_eval.json"))
    p.add_argument("--restart", action="store_true", help="replace an --out made with other settings")
    a = p.parse_args(argv)
    overrides = {}
    for item in a.set:
        key, sep, value = item.partition("=")
        if not sep or key not in DreamConfig.__dataclass_fields__:
            p.error(f"--set {item!r}: expected KEY=VALUE with KEY a DreamConfig field")
        if key in ("prompt", "steps", "seed"):
            p.error(f"--set {key}: set by the benchmark (use --prompts, --steps, --seeds)")
        default = DreamConfig.__dataclass_fields__[key].default
        if not isinstance(default, (int, float, str)) or isinstance(default, bool):
            p.error(f"--set {key}: only number and text fields can be set")
        try:
            overrides[key] = type(default)(value)
        except ValueError:
            p.error(f"--set {item!r}: expected a {type(default).__name__}")
    prompts = {"heldout": HELD_OUT, "train": VALIDATION, "unseen-val": VALIDATION_UNSEEN}[a.prompts]
    configs = {}  # every run's DreamConfig, built (and so checked) before any run starts
    for arm in a.arms:
        for colour, shape in prompts:
            for seed in a.seeds:
                fields = {"guidance": a.guidance, "guidance2": a.guidance, **ARMS[arm], **overrides}
                try:
                    configs[arm, Prompt(colour, shape), seed] = DreamConfig(
                        prompt=Prompt(colour, shape).text, steps=a.steps, seed=seed, **fields)  # fmt: skip
                except ValueError as exc:
                    p.error(f"arm {arm}: {exc}")
    retain_freed_memory()
    # the priors every arm uses: the built-in ones unless --set prior=... / latent_prior=... names files
    specs = {"pixel": overrides.get("prior", "builtin"), "latent": overrides.get("latent_prior", "builtin")}
    priors = {}
    for space, spec in specs.items():
        name = "prior" if space == "pixel" else "latent_prior"
        if spec != "builtin" and Path(spec).is_dir():
            p.error(f"--set {name}={spec}: a folder; the benchmark takes 'builtin' or a tiny-prior .safetensors file "
                    "(the judge knows only the tiny priors' vocabulary)")  # fmt: skip
        try:
            priors[space] = load_prior(spec, space)
        except (ValueError, OSError) as exc:
            p.error(f"--set {name}={spec}: {exc}")
    files = {space: BUILTIN[space] if spec == "builtin" else Path(spec) for space, spec in specs.items()}
    # the judged pairs must be unseen (heldout, unseen-val) or seen (train) by every prior a run uses
    stage2 = any(cfg.stage2_fraction > 0 for cfg in configs.values())
    for space in ("pixel", "latent") if stage2 else ("pixel",):
        name = "prior" if space == "pixel" else "latent_prior"
        try:
            seen = training_pairs(files[space])
        except ValueError as exc:
            p.error(f"--set {name}={specs[space]}: {exc}")
        if seen is None:
            p.error(f"--prompts {a.prompts}: {files[space]} records no training captions, so the prompts "
                    f"cannot be checked to be {'seen' if a.prompts == 'train' else 'unseen'}")  # fmt: skip
        if a.prompts == "train":
            if unseen := sorted(f"{c} {s}" for c, s in prompts if (c, s) not in seen):
                p.error(f"--prompts train: the {space} prior {files[space]} was not trained on "
                        f"{', '.join(unseen)}, so these are not validation captions for it")  # fmt: skip
        elif leaked := sorted(f"{c} {s}" for c, s in prompts if (c, s) in seen):
            hint = " (tools/train_tiny_prior.py --validation-split)" if a.prompts == "unseen-val" else ""
            p.error(f"--prompts {a.prompts}: the {space} prior {files[space]} was trained on "
                    f"{', '.join(leaked)}; use priors trained without them{hint}")  # fmt: skip
    report = load_json(a.out) if a.out.is_file() else {"runs": {}}
    weights = {space: hashlib.sha256(f.read_bytes()).hexdigest()[:16] for space, f in files.items()}
    code = hashlib.sha256(b"".join(f.read_bytes() for f in CODE)).hexdigest()[:16]
    settings = {"steps": a.steps, "guidance": a.guidance, "prompts": a.prompts, "overrides": overrides,
                "judge": JUDGE_VERSION, "prior_sha256": weights, "code_sha256": code}  # fmt: skip
    if report["runs"] and {k: report.get("settings", {}).get(k) for k in settings} != settings:
        if not a.restart:
            changed = sorted(k for k in settings if report.get("settings", {}).get(k) != settings[k])
            p.error(f"--out {a.out}: holds runs made with other settings ({', '.join(changed)}); give another "
                    "--out, or --restart to replace them")  # fmt: skip
        report = {"runs": {}}
    arms = {k: {**ARMS[k], **{f: v for f, v in overrides.items() if f in ARMS[k]}} for k in a.arms}  # as run
    report["settings"] = {**settings, "seeds": a.seeds, "arms": arms}
    for (arm, prompt, seed), cfg in configs.items():
        key = f"{arm}/{prompt.text}/{seed}"
        config = json.loads(json.dumps(asdict(cfg), default=str))
        if report["runs"].get(key, {}).get("config") == config:
            continue  # the same run (settings, code, weights): reuse it
        t0 = time.perf_counter()
        d = Dreamer(cfg, priors=(priors["pixel"], priors["latent"] if cfg.stage2_fraction > 0 else None))
        d.run(progress=False)
        v = judge(d.model, prompt).as_dict()
        report["runs"][key] = {"arm": arm, "prompt": prompt.text, "seed": seed, "gaussians": len(d.model),
                               "seconds": time.perf_counter() - t0, **v, "config": config}  # fmt: skip
        print(f"{key:40s} -> {v['colour']:8s} {v['shape']:9s} match={v['match']!s:5s} "
              f"views={v['per_view_match']:.2f} sat={v['saturation']:.2f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)  # fmt: skip
        save_json(report, a.out)
    summary = {}
    for arm in a.arms:
        runs = [r for r in report["runs"].values() if r["arm"] == arm and r["seed"] in a.seeds]
        per_seed = {s: [r for r in runs if r["seed"] == s] for s in a.seeds}
        matches = [sum(r["match"] for r in rs) for rs in per_seed.values()]
        views = [statistics.mean(r["per_view_match"] for r in rs) for rs in per_seed.values() if rs]
        sats = [statistics.mean(r["saturation"] for r in rs) for rs in per_seed.values() if rs]
        summary[arm] = {"prompts_matched": _mean_std(matches), "prompts_judged": len(prompts),
                        "view_consistency": _mean_std(views), "saturation": _mean_std(sats),
                        "per_seed_matches": matches}  # fmt: skip
    report["summary"] = summary
    save_json(report, a.out)
    head = f"matched /{len(prompts)}"
    print(f"\n{'arm':10s} {head:>14s} {'view consistency':>18s} {'saturation':>14s}   (mean +- std over seeds)")
    for arm, s in summary.items():
        m, v, t = s["prompts_matched"], s["view_consistency"], s["saturation"]
        print(f"{arm:10s} {m[0]:8.2f} +- {m[1]:.2f} {v[0]:12.3f} +- {v[1]:.3f} {t[0]:8.3f} +- {t[1]:.3f}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
