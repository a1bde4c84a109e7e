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
