"""Registry: add / match, survives restart, migrates old schemas, sees other processes' writes."""
from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from provenance import fingerprints as fpm
from provenance import registry as regmod
from provenance.fingerprints import Fingerprint, fingerprint
from provenance.registry import Match, Registry


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    return {n: getattr(data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")}


@pytest.fixture(scope="module")
def fps(photos):
    return {n: fingerprint(a) for n, a in photos.items()}


def _crop(a, area=0.7, fx=0.9, fy=0.1):
    h, w = a.shape[:2]
    s = math.sqrt(area)
    ch, cw = round(h * s), round(w * s)
    y0, x0 = round((h - ch) * fy), round((w - cw) * fx)
    return np.ascontiguousarray(a[y0:y0 + ch, x0:x0 + cw])


def test_add_match_and_restart(tmp_path, photos, fps):
    db = tmp_path / "reg.db"
    with Registry(db) as reg:
        for n in ("astronaut", "coffee", "chelsea"):
            reg.add(n, fps[n], source_uri=f"file:///data/{n}.png", label="faces-v1")
        assert len(reg) == 3 and "coffee" in reg
        m = reg.best_match(fingerprint(_crop(photos["coffee"])))
        assert isinstance(m, Match) and m.asset_id == "coffee" and m.label == "faces-v1"
        assert 0 <= m.distance <= fpm.THRESHOLD and 0.0 < m.confidence <= 1.0
        assert reg.best_match(fps["rocket"]) is None
    # a new process / a restart: reopen the file
    with Registry(db) as reg:
        assert len(reg) == 3 and reg.schema_version == regmod.SCHEMA_VERSION
        m = reg.best_match(fingerprint(photos["chelsea"][:, ::-1].copy()))
        assert m is not None and m.asset_id == "chelsea" and m.source_uri == "file:///data/chelsea.png"
        assert reg.fingerprints("astronaut") == [fps["astronaut"]]
        d = m.to_dict()
        assert d["asset_id"] == "chelsea" and d["distance"] == m.distance and "confidence" in d


def test_match_lists_nearest_first_and_replace(tmp_path, fps):
    with Registry(tmp_path / "r.db") as reg:
        reg.add("a", fps["astronaut"], label="v1")
        reg.add("a-dup", fps["astronaut"], label="v1")
        reg.add("c", fps["coffee"])
        ms = reg.match(fps["astronaut"], k=5)
        assert [m.asset_id for m in ms] == ["a", "a-dup"] and ms[0].distance == 0
        reg.add("a", fps["coffee"], label="v2")          # replace: same id, new content
        assert reg.get("a")["label"] == "v2"
        assert [m.asset_id for m in reg.match(fps["astronaut"], k=5)] == ["a-dup"]
        assert reg.remove("a-dup") and not reg.remove("a-dup")
        assert reg.best_match(fps["astronaut"]) is None


def test_index_sees_writes_from_another_connection(tmp_path, fps):
    db = tmp_path / "shared.db"
    with Registry(db) as reader, Registry(db) as writer:
        assert reader.best_match(fps["rocket"]) is None      # builds the (empty) index
        writer.add("rocket", fps["rocket"])
        m = reader.best_match(fps["rocket"])                  # data_version changed: rebuilt
        assert m is not None and m.asset_id == "rocket"


def test_unchanged_by_etag_or_size_mtime(tmp_path, fps):
    with Registry(tmp_path / "u.db") as reg:
        reg.add("s3://b/k.png", fps["coffee"], source_uri="s3://b/k.png", etag="abc")
        reg.add("file:///x.png", fps["chelsea"], source_uri="file:///x.png", size=10, mtime=5.0)
        assert reg.unchanged("s3://b/k.png", etag="abc")
        assert not reg.unchanged("s3://b/k.png", etag="def")
        assert reg.unchanged("file:///x.png", size=10, mtime=5.0)
        assert not reg.unchanged("file:///x.png", size=11, mtime=5.0)
        assert not reg.unchanged("file:///nope.png", size=10, mtime=5.0)


def _dump(db):
    con = sqlite3.connect(db)
    try:
        return (con.execute("SELECT * FROM assets ORDER BY asset_id").fetchall(),
                con.execute("SELECT * FROM frames ORDER BY asset_id, frame").fetchall())
    finally:
        con.close()


def test_migrates_a_v1_database_without_losing_rows(tmp_path, photos, fps):
    from PIL import Image

    src = tmp_path / "legacy.png"
    Image.fromarray(photos["astronaut"]).save(src)
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute(regmod._SCHEMA_V1.strip().rstrip(";"))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    con.execute("INSERT INTO schema_version VALUES (1)")
    con.execute("INSERT INTO assets VALUES (?,?,?,?)",
                ("legacy-1", "old-set", src.as_uri(), fps["coffee"].full.tobytes().hex()))
    con.commit()
    con.close()
    # rows of an unknown algorithm: refused with the way forward, nothing lost
    with pytest.raises(regmod.AlgorithmMismatchError, match="fingerprint rehash --registry"):
        Registry(db)
    with Registry(db, check_algorithm=False) as reg:
        assert reg.schema_version == regmod.SCHEMA_VERSION and len(reg) == 1 and reg.algorithm is None
        info = reg.get("legacy-1")
        assert info["label"] == "old-set" and info["kind"] == "image"
        blob = reg._con.execute("SELECT parts FROM frames WHERE asset_id='legacy-1'").fetchone()[0]
        assert len(blob) == fpm.HASH_BYTES                    # v1 kept its full-frame hash, as it was
        before = _dump(db)
        with pytest.raises(regmod.AlgorithmMismatchError):
            reg.best_match(fps["astronaut"])
        with pytest.raises(regmod.AlgorithmMismatchError):
            reg.add("new", fps["coffee"])
        assert _dump(db) == before
        res = reg.rehash()                                    # recomputed from the stored source
        assert res.applied and res.rehashed == ["legacy-1"] and not res.failed
        assert reg.algorithm == fpm.ALGORITHM
        assert reg.fingerprints("legacy-1") == [fingerprint(str(src))]
        m = reg.best_match(fps["astronaut"])
        assert m is not None and m.asset_id == "legacy-1" and m.label == "old-set" and m.distance == 0
        reg.add("new", fps["coffee"])
    with Registry(db) as reg:                                 # restart: the recorded algorithm stays
        assert reg.algorithm == fpm.ALGORITHM and len(reg) == 2
    con = sqlite3.connect(db)
    versions = [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY version")]
    con.close()
    assert versions == [1, 2, 3]


def test_new_registry_records_the_algorithm_and_keeps_it_after_restart(tmp_path, fps):
    db = tmp_path / "r.db"
    with Registry(db) as reg:
        assert reg.algorithm == fpm.ALGORITHM
        reg.add("a", fps["astronaut"])
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta WHERE key='algorithm'").fetchone() == (fpm.ALGORITHM,)
    con.close()
    with Registry(db) as reg:
        assert reg.algorithm == fpm.ALGORITHM and reg.best_match(fps["astronaut"]).asset_id == "a"


def test_empty_legacy_registry_is_upgraded(tmp_path, fps):
    db = tmp_path / "v2.db"
    con = sqlite3.connect(db)
    con.execute(regmod._SCHEMA_V1.strip().rstrip(";"))
    regmod._migrate_1_to_2(con)
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    con.executemany("INSERT INTO schema_version VALUES (?)", [(1,), (2,)])
    con.commit()
    con.close()
    with Registry(db) as reg:
        assert reg.schema_version == 3 and reg.algorithm == fpm.ALGORITHM
        reg.add("c", fps["coffee"])
        assert reg.best_match(fps["coffee"]).asset_id == "c"


def test_other_algorithm_is_refused_without_changing_rows(tmp_path, monkeypatch, fps):
    db = tmp_path / "r.db"
    with Registry(db) as reg:
        reg.add("a", fps["astronaut"], label="v1")
        reg.add("c", fps["coffee"], label="v1")
    before = _dump(db)
    monkeypatch.setattr(fpm, "ALGORITHM", "synthguard-fp/999")
    with pytest.raises(regmod.AlgorithmMismatchError) as ei:
        Registry(db)
    msg = str(ei.value)
    assert isinstance(ei.value, ValueError) and "synthguard-fp/999" in msg and "rehash" in msg
    with Registry(db, check_algorithm=False) as reg:
        assert len(reg) == 2 and reg.get("a")["label"] == "v1"          # still readable
        for call in (lambda: reg.add("x", fps["rocket"]), lambda: reg.match(fps["astronaut"]),
                     lambda: reg.best_match(fps["coffee"]), lambda: reg.match_many([fps["coffee"]]),
                     lambda: reg.match_video([fps["coffee"]])):
            with pytest.raises(regmod.AlgorithmMismatchError):
                call()
    assert _dump(db) == before


def test_rehash_reports_unreadable_sources_and_changes_nothing_until_done(tmp_path, monkeypatch, photos, fps):
    from PIL import Image

    db = tmp_path / "r.db"
    srcs = {}
    for n in ("astronaut", "coffee", "chelsea"):
        srcs[n] = tmp_path / f"{n}.png"
        Image.fromarray(photos[n]).save(srcs[n])
    with Registry(db) as reg:
        # stored hashes that are NOT those of the files (as if made by another algorithm)
        reg.add("a", fps["rocket"], source_uri=srcs["astronaut"].as_uri(), label="x")
        reg.add("c", fps["rocket"], source_uri=str(srcs["coffee"]))          # a plain path works too
        reg.add("h", fps["rocket"], source_uri=srcs["chelsea"].as_uri())
        reg.add("s3", fps["rocket"], source_uri="s3://bucket/key.png")       # no S3 client given
    srcs["chelsea"].unlink()
    monkeypatch.setattr(fpm, "ALGORITHM", "synthguard-fp/999")
    before = _dump(db)
    with Registry(db, check_algorithm=False) as reg:
        seen = []
        res = reg.rehash(progress=lambda done, total: seen.append((done, total)))
        assert not res.applied and sorted(res.rehashed) == ["a", "c"]
        assert sorted(f["asset_id"] for f in res.failed) == ["h", "s3"]
        assert seen[-1] == (4, 4)
        assert _dump(db) == before and reg.algorithm != fpm.ALGORITHM
        with pytest.raises(regmod.AlgorithmMismatchError):
            reg.best_match(fps["astronaut"])
        res = reg.rehash(drop_unreadable=True)              # staged hashes are reused, not recomputed
        assert res.applied and sorted(res.reused) == ["a", "c"] and res.rehashed == []
        assert sorted(res.dropped) == ["h", "s3"] and len(reg) == 2
        assert reg.algorithm == "synthguard-fp/999"
        m = reg.best_match(fps["astronaut"])
        assert m is not None and m.asset_id == "a" and m.distance == 0 and m.label == "x"
        assert reg.best_match(fps["rocket"]) is None
        assert reg.get("c")["source_uri"] == str(srcs["coffee"])
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM rehash_frames").fetchone() == (0,)
    con.close()


def test_newer_schema_and_garbage_files_are_refused(tmp_path):
    db = tmp_path / "new.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    con.execute("INSERT INTO schema_version VALUES (99)")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="newer"):
        Registry(db)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError):
        Registry(junk)
    with pytest.raises(ValueError):
        Registry(tmp_path)


def test_video_asset_matches_when_enough_frames_match(tmp_path):
    from fixtures.make_media import video_bytes

    ref = fpm.video_fingerprints(video_bytes("mp4", seconds=1.0, fps=12, size=(192, 144), audio=False,
                                             source="astronaut"), max_frames=6)
    copy = fpm.video_fingerprints(video_bytes("mp4", seconds=1.0, fps=12, size=(128, 96), audio=False,
                                              source="astronaut", bit_rate=120_000), max_frames=6)
    other = fpm.video_fingerprints(video_bytes("mp4", seconds=1.0, fps=12, size=(192, 144), audio=False,
                                               source="coffee"), max_frames=6)
    with Registry(tmp_path / "v.db") as reg:
        reg.add_video("clip-1", ref, label="clips")
        ms = reg.match_video(copy)
        assert ms and ms[0].asset_id == "clip-1" and ms[0].kind == "video"
        assert ms[0].frames_matched >= 3 and ms[0].frames_total == 6
        assert reg.match_video(other) == []


def test_multi_index_hashing_agrees_with_brute_force():
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, size=(20_000, 32), dtype=np.uint8)
    Q = X[:200].copy()
    for i, q in enumerate(Q):              # plant near-duplicates at distances 0..40
        bits = np.unpackbits(q)
        flip = rng.choice(256, size=i % 41, replace=False)
        bits[flip] ^= 1
        Q[i] = np.packbits(bits)
    mih = regmod._MIH(X)
    T = 40
    qi, rows, d = mih.range_search(Q, T)
    got = {(int(a), int(b)) for a, b in zip(qi, rows)}
    truth = {(i, int(j)) for i in range(len(Q)) for j in np.nonzero(fpm.hamming(X, Q[i]) <= T)[0]}
    assert got <= truth                                      # never a false hit
    exact = {(i, j) for i, j in truth if fpm.hamming(X[j], Q[i]) <= 15}
    assert exact <= got                                      # pigeonhole: exact up to 15
    assert len(got) >= 0.8 * len(truth)


def test_large_registry_uses_the_index_path(tmp_path, monkeypatch, fps, photos):
    monkeypatch.setattr(regmod, "MIH_MIN_ROWS", 100)
    with Registry(tmp_path / "big.db") as reg:
        for n, f in fps.items():
            reg.add(n, f)
        m = reg.best_match(fingerprint(_crop(photos["astronaut"], 0.8, 0.5, 0.5)))
        assert reg._index.mih_parts is not None
        assert m is not None and m.asset_id == "astronaut"
        queries = [fingerprint(_crop(photos[n], 0.75, 0.2, 0.8)) for n in ("coffee", "chelsea")] + [fps["rocket"]]
        batch = reg.match_many(queries)
        assert [b.asset_id if b else None for b in batch] == [b.asset_id if b else None for b in
                                                              (reg.best_match(q) for q in queries)]
        assert batch[0].asset_id == "coffee" and batch[2].asset_id == "rocket"


def test_a_match_through_the_pdq_component_alone_is_found_on_both_paths(tmp_path, monkeypatch, fps):
    target = Fingerprint.of(fps["coffee"].parts, fps["astronaut"].pdq)   # parts of one, PDQ of the other
    q = fps["astronaut"]
    assert target.part_distance(q) > fpm.THRESHOLD and target - q == 0
    with Registry(tmp_path / "small.db") as reg:
        reg.add("t", target)
        reg.add("r", fps["rocket"])
        m = reg.best_match(q)
        assert m is not None and m.asset_id == "t" and m.distance == 0
    monkeypatch.setattr(regmod, "MIH_MIN_ROWS", 100)
    with Registry(tmp_path / "big.db") as reg:
        for n in ("chelsea", "rocket"):
            reg.add(n, fps[n])
        reg.add("t", target)
        assert reg.best_match(q).asset_id == "t" and reg._index.mih_pdq is not None
        batch = reg.match_many([q, fps["rocket"], fps["coffee"]])
        assert batch[0].asset_id == "t" and batch[0].distance == 0 and batch[1].asset_id == "rocket"
        assert batch[2] is not None and batch[2].asset_id == "t"               # coffee: through the parts
