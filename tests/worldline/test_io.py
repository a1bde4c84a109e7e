import os
import pickle
import stat

import pytest
import torch

from worldline.io import atomic_path, atomic_write, load_json, load_weights, save_json, save_weights


def test_interrupted_write_keeps_previous_file(tmp_path):
    path = tmp_path / "ckpt.bin"
    path.write_bytes(b"old content")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(path) as f:
        f.write(b"half of the new")
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old content"
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_atomic_write_replaces_on_success(tmp_path):
    path = tmp_path / "sub" / "a.json"
    save_json({"b": 1, "a": [1, 2]}, path)
    assert load_json(path) == {"a": [1, 2], "b": 1}
    save_json({"c": 3}, path)
    assert load_json(path) == {"c": 3}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValueError, match="bad.json: invalid JSON"):
        load_json(tmp_path / "bad.json")


def _record_durability_calls(monkeypatch) -> list[tuple]:
    """Wrap os.open / os.fsync / os.replace; return the log of (event, detail) in call order.

    fsync events carry whether the fd is a directory and its (st_dev, st_ino), found with fstat
    on the fd itself, so the check does not depend on how the code names the directory.
    """
    log: list[tuple] = []
    real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

    def open_(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        log.append(("open", os.fspath(path), fd))
        return fd

    def fsync(fd):
        st = os.fstat(fd)
        log.append(("fsync", stat.S_ISDIR(st.st_mode), (st.st_dev, st.st_ino)))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        log.append(("replace", os.fspath(src), os.fspath(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return log


@pytest.mark.parametrize("writer", ["atomic_path", "atomic_write"])
def test_rename_is_made_durable_by_fsyncing_the_directory(tmp_path, monkeypatch, writer):
    path = tmp_path / "sub" / "data.bin"
    log = _record_durability_calls(monkeypatch)
    if writer == "atomic_path":
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"payload")  # as h5py / safetensors would
    else:
        with atomic_write(path) as f:
            f.write(b"payload")
    assert path.read_bytes() == b"payload"
    parent = os.stat(path.parent)
    parent_id = (parent.st_dev, parent.st_ino)
    renames = [i for i, e in enumerate(log) if e[0] == "replace" and e[2] == os.fspath(path)]
    assert len(renames) == 1, log
    file_syncs = [i for i, e in enumerate(log) if e[0] == "fsync" and not e[1]]
    dir_syncs = [i for i, e in enumerate(log) if e[0] == "fsync" and e[1] and e[2] == parent_id]
    assert file_syncs and file_syncs[0] < renames[0], f"file not fsync'ed before the rename: {log}"
    assert any(i > renames[0] for i in dir_syncs), f"parent directory not fsync'ed after the rename: {log}"


def test_weights_roundtrip_and_interrupted_save(tmp_path, monkeypatch):
    w = {"layer.weight": torch.randn(3, 4), "layer.bias": torch.arange(3.0)}
    path = tmp_path / "model.safetensors"
    save_weights(w, path, metadata={"step": 10})
    back = load_weights(path)
    assert back.keys() == w.keys()
    for k in w:
        torch.testing.assert_close(back[k], w[k])
    import safetensors.torch

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_weights({"x": torch.zeros(1)}, path)
    assert load_weights(path).keys() == w.keys()


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_load_weights_never_unpickles(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": _Evil()}))
    with pytest.raises(ValueError, match="evil.pt: refused to load"):
        load_weights(path)
    assert "code ran" not in capsys.readouterr().out
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="junk.safetensors: not a valid safetensors"):
        load_weights(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="unknown weights format"):
        (tmp_path / "w.npz").write_bytes(b"")
        load_weights(tmp_path / "w.npz")
