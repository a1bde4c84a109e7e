"""Does a trained policy look at the scene, or copy its own motion? An open-loop probe.

For demonstration streams (episode x recorded view) of a demo file, spread over all its episodes,
the policy predicts the action at step ``t`` from the demonstration's own frames and history
(teacher forcing), and the prediction is compared with the expert's action at that step, across
streams (the views of one episode share its layout, so the episode count is reported too; these
are training demonstrations when the file is the training data):

- the Pearson correlation of predicted and expert dx (and dy), and
- the spread (std, mm) of the predicted and of the expert dx, dy.

At step 0 every PickCube episode starts from the same arm pose, so the expert's first action
depends on where the cube is, which only the image shows: a policy that ignores the image predicts
the same first action everywhere (spread near 0, correlation near 0). At later steps a policy can
also read the direction from the arm's own motion (its pose in the proprioception, or the arm in
the history frames), the "copycat" shortcut; a high correlation at step 4 with none at step 0 is
its signature. In closed loop nobody starts the motion for the policy, and it fails.

    python tools/bench/vla_probe.py --checkpoint runs/cpu-tiny --data data/mvbench/PickCube.hdf5 --steps 0 1 4 8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder or run folder")
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="demo files (HDF5)")
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 1, 4, 8])
    ap.add_argument("--streams", type=int, default=300, help="at most this many streams per step")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/vla_probe.json"))
    args = ap.parse_args()

    import numpy as np
    import torch

    from vla.cli import _resolve_checkpoint
    from vla.data import DemoDataset
    from vla.modeling import FourDVLAPolicy
    from worldline.io import save_json

    torch.set_num_threads(args.threads)
    ckpt = _resolve_checkpoint(args.checkpoint)
    model = FourDVLAPolicy.load(ckpt)
    ds = DemoDataset(args.data, model.config)  # no augmentation: the frames as recorded
    rows = {}
    for t in args.steps:
        idx = [i for i, (_, step) in enumerate(ds.index) if step == t]
        if len(idx) < 3:
            raise SystemExit(f"--steps: only {len(idx)} streams reach step {t}")
        # spread over all episodes (streams are stored episode by episode, views of one episode share its layout)
        idx = [idx[j] for j in np.unique(np.linspace(0, len(idx) - 1, min(args.streams, len(idx))).round().astype(int))]
        layouts = len({ds.streams[ds.index[i][0]].episode for i in idx})
        pred, expert = [], []
        for i in idx:
            sample = ds[i]
            batch = {k: (v[None] if torch.is_tensor(v) else [v]) for k, v in sample.items()}
            pred.append(model.predict_action_chunk(batch)[0, 0, :2].numpy())
            expert.append(sample["action"][0, :2].numpy())
        p, e = np.array(pred), np.array(expert)
        corr = [float(np.corrcoef(p[:, j], e[:, j])[0, 1]) if p[:, j].std() > 0 else 0.0 for j in range(2)]
        rows[t] = {"streams": len(idx), "episodes": layouts, "corr_dx": corr[0], "corr_dy": corr[1],
                   "pred_std_mm": (1000 * p.std(0)).tolist(), "expert_std_mm": (1000 * e.std(0)).tolist()}  # fmt: skip
        print(f"step {t:3d}  r(dx) {corr[0]:+.3f}  r(dy) {corr[1]:+.3f}  spread predicted "
              f"{1000 * p.std(0)[0]:6.2f} / {1000 * p.std(0)[1]:6.2f} mm, expert {1000 * e.std(0)[0]:6.2f} / "
              f"{1000 * e.std(0)[1]:6.2f} mm  ({len(idx)} streams, {layouts} episodes)")  # fmt: skip
    c = model.config
    config = {"proprio": c.proprio, "sampler": c.sampler, "keypoints": c.vision.keypoints}
    result = {"checkpoint": str(ckpt), "config": config, "data": [str(d) for d in args.data], "steps": rows}
    save_json(result, args.out)
    print(json.dumps({"out": str(args.out)}))


if __name__ == "__main__":
    main()
