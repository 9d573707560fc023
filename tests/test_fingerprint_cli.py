"""`synthguard fingerprint add|match` on a directory: recursive, skips unchanged, exit codes, JSON."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

import cli


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    return {n: getattr(data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")}


def _save(path, rgb, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, **kw)
    return path


def _crop(a, area=0.7):
    h, w = a.shape[:2]
    s = math.sqrt(area)
    return np.ascontiguousarray(a[h - round(h * s):, : round(w * s)])


@pytest.fixture()
def dataset(tmp_path, photos):
    root = tmp_path / "train"
    _save(root / "a" / "astronaut.png", photos["astronaut"])
    _save(root / "a" / "b" / "coffee.jpg", photos["coffee"], quality=92)
    _save(root / "chelsea.webp", photos["chelsea"], quality=90)
    (root / "notes.txt").write_text("not media")
    return root


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_add_then_match_directory(tmp_path, dataset, photos, capsys):
    db = tmp_path / "reg.db"
    code, out, err = run(capsys, "fingerprint", "add", dataset, "--registry", db, "--label", "train-v1", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert len(res["added"]) == 3 and res["skipped_unchanged"] == [] and res["assets_total"] == 3
    # second run: nothing changed, nothing re-hashed
    code, out, _ = run(capsys, "fingerprint", "add", dataset, "--registry", db, "--label", "train-v1")
    assert code == 0 and "added 0, skipped 3 unchanged" in out

    leaks = tmp_path / "leaks"
    _save(leaks / "crop.jpg", _crop(photos["coffee"]), quality=60)
    _save(leaks / "flip.png", np.ascontiguousarray(photos["astronaut"][:, ::-1]))
    _save(leaks / "other.png", photos["rocket"])
    code, out, err = run(capsys, "fingerprint", "match", leaks, "--registry", db, "--json")
    assert code == 0, err
    items = {r["uri"].rsplit("/", 1)[-1]: r for r in json.loads(out)["items"]}
    assert items["crop.jpg"]["matches"][0]["asset_id"].endswith("/a/b/coffee.jpg")
    assert items["crop.jpg"]["matches"][0]["label"] == "train-v1"
    assert items["flip.png"]["matches"][0]["asset_id"].endswith("/a/astronaut.png")
    assert 0 < items["flip.png"]["matches"][0]["confidence"] <= 1
    assert items["other.png"]["matches"] == []

    code, out, err = run(capsys, "fingerprint", "match", leaks / "crop.jpg", "--registry", db, "--fail-on-match")
    assert code == 1 and "coffee.jpg" in out and "distance" in out
    code, out, err = run(capsys, "fingerprint", "match", leaks / "other.png", "--registry", db, "--fail-on-match")
    assert code == 0 and "no match" in out


def test_changed_file_is_refingerprinted(tmp_path, dataset, photos, capsys):
    db = tmp_path / "reg.db"
    assert run(capsys, "fingerprint", "add", dataset, "--registry", db)[0] == 0
    target = dataset / "chelsea.webp"
    _save(target, photos["rocket"], quality=90)
    import os
    os.utime(target, (1, 1))
    code, out, _ = run(capsys, "fingerprint", "add", dataset, "--registry", db, "--json")
    res = json.loads(out)
    assert code == 0 and [u.rsplit("/", 1)[-1] for u in res["added"]] == ["chelsea.webp"]


def test_usage_errors_are_one_line(tmp_path, capsys, dataset):
    code, _, err = run(capsys, "fingerprint", "match", dataset, "--registry", tmp_path / "missing.db")
    assert code == 2 and "registry not found" in err and "Traceback" not in err
    code, _, err = run(capsys, "fingerprint", "add", tmp_path / "nope", "--registry", tmp_path / "r.db")
    assert code == 2 and "no such file" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "fingerprint", "add", empty, "--registry", tmp_path / "r.db")
    assert code == 2 and "no image or video" in err
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"x" * 4096)
    code, _, err = run(capsys, "fingerprint", "add", dataset, "--registry", junk)
    assert code == 2 and "not a synthguard registry" in err


def test_undecodable_file_is_reported_not_fatal(tmp_path, dataset, capsys):
    (dataset / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    code, out, err = run(capsys, "fingerprint", "add", dataset, "--registry", tmp_path / "r.db")
    assert code == 1 and "added 3" in out and "broken.png" in err


def test_registry_of_another_algorithm_is_one_line_then_rehash_fixes_it(tmp_path, dataset, photos, capsys,
                                                                          monkeypatch):
    from provenance import fingerprints as fpm

    db = tmp_path / "reg.db"
    assert run(capsys, "fingerprint", "add", dataset, "--registry", db)[0] == 0
    monkeypatch.setattr(fpm, "ALGORITHM", "synthguard-fp/999")
    leak = _save(tmp_path / "leak.png", np.ascontiguousarray(photos["coffee"][:, ::-1]))
    for verb, target in (("match", leak), ("add", dataset)):
        code, out, err = run(capsys, "fingerprint", verb, target, "--registry", db)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "synthguard-fp/999" in err and "fingerprint rehash --registry" in err
    (dataset / "chelsea.webp").unlink()
    code, out, err = run(capsys, "fingerprint", "rehash", "--registry", db, "--json")
    res = json.loads(out)
    assert code == 1 and not res["applied"] and len(res["rehashed"]) == 2
    assert [f["source_uri"].rsplit("/", 1)[-1] for f in res["failed"]] == ["chelsea.webp"]
    assert not any(a.endswith("chelsea.webp") for a in res["rehashed"])
    assert run(capsys, "fingerprint", "match", leak, "--registry", db)[0] == 2          # still refused
    code, out, err = run(capsys, "fingerprint", "rehash", "--registry", db, "--drop-unreadable")
    assert code == 1 and "recorded synthguard-fp/999" in out and "2 assets" in out and "chelsea.webp" in err
    code, out, err = run(capsys, "fingerprint", "match", leak, "--registry", db, "--json")
    assert code == 0, err
    assert json.loads(out)["items"][0]["matches"][0]["asset_id"].endswith("/a/b/coffee.jpg")
    code, out, err = run(capsys, "fingerprint", "rehash", "--registry", db)
    assert code == 0 and "rehashed 2, failed 0" in out
