from seal_repro.memo import Memo, fingerprint_model_dir, key_of


def test_key_depends_on_every_field_and_not_on_order():
    a = key_of({"x": 1, "y": [1, 2]})
    assert a == key_of({"y": [1, 2], "x": 1})
    assert a != key_of({"x": 2, "y": [1, 2]})
    assert a != key_of({"x": 1, "y": [2, 1]})


def test_hits_misses_and_corrupt_entries(tmp_path):
    memo = Memo(tmp_path)
    k = key_of({"round": 1})
    assert memo.get(k) is None
    memo.put(k, {"acc": 0.5})
    assert memo.get(k) == {"acc": 0.5}
    assert (memo.hits, memo.misses) == (1, 1)
    memo._path(k).write_text("{not json")
    assert memo.get(k) is None  # recomputed, never trusted


def test_disabled_memo_never_reads_or_writes(tmp_path):
    memo = Memo(tmp_path, enabled=False)
    memo.put("ab" * 32, {"a": 1})
    assert memo.get("ab" * 32) is None and not any(tmp_path.iterdir())


def test_model_fingerprint_changes_with_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 4096)
    a = fingerprint_model_dir(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 4095 + b"\1")
    assert fingerprint_model_dir(tmp_path) != a


def test_key_names_the_library_versions(monkeypatch):
    from seal_repro import memo as memo_module

    a = key_of({"x": 1})
    versions = dict(memo_module.library_versions())
    assert versions["torch"] and "transformers" in versions
    monkeypatch.setattr(memo_module, "library_versions", lambda: {**versions, "torch": "0.0.0-other"})
    assert key_of({"x": 1}) != a  # another torch may compute another result: the memo misses


def test_folders_are_memoized_whole(tmp_path):
    memo = Memo(tmp_path / "memo")
    k = key_of({"policy": 1})
    dest = tmp_path / "out" / "policy"
    assert memo.get_dir(k, dest) is False and not dest.exists() and memo.misses == 1
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "adapter.bin").write_bytes(b"\1\2\3")
    (src / "sub" / "config.json").write_text("{}")
    memo.put_dir(k, src)
    memo.put_dir(k, src)  # a second copy of the same key is harmless
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("replaced")
    assert memo.get_dir(k, dest) is True and memo.hits == 1
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["adapter.bin", "sub", "sub/config.json"]
    assert (dest / "adapter.bin").read_bytes() == b"\1\2\3"
    assert not [p for p in (tmp_path / "memo").rglob(".tmp-*")]  # no half-written copy left behind
    off = Memo(tmp_path / "off", enabled=False)
    off.put_dir(k, src)
    assert off.get_dir(k, dest) is False and not (tmp_path / "off").exists()
