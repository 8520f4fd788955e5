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
