"""`synthguard fingerprint add|match s3://...` against a real SeaweedFS S3 server on 127.0.0.1."""
from __future__ import annotations

import io
import json
import math
import uuid

import numpy as np
import pytest
from PIL import Image

import cli

pytestmark = pytest.mark.integration


def _png(rgb) -> bytes:
    b = io.BytesIO()
    Image.fromarray(rgb).save(b, format="PNG")
    return b.getvalue()


def _jpeg(rgb, q=70) -> bytes:
    b = io.BytesIO()
    Image.fromarray(rgb).save(b, format="JPEG", quality=q)
    return b.getvalue()


def test_add_and_match_an_s3_prefix(seaweed, tmp_path, capsys, monkeypatch):
    from skimage import data

    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint_url)
    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    s3 = seaweed.client("s3")
    bucket = f"fp-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    astro, coffee, rocket = data.astronaut(), data.coffee(), data.rocket()
    s3.put_object(Bucket=bucket, Key="train/v1/astronaut.png", Body=_png(astro))
    s3.put_object(Bucket=bucket, Key="train/v1/nested/coffee.png", Body=_png(coffee))
    s3.put_object(Bucket=bucket, Key="train/v1/readme.txt", Body=b"not media")
    h, w = coffee.shape[:2]
    s = math.sqrt(0.7)
    crop = np.ascontiguousarray(coffee[: round(h * s), w - round(w * s):])
    s3.put_object(Bucket=bucket, Key="uploads/leak.jpg", Body=_jpeg(crop))
    s3.put_object(Bucket=bucket, Key="uploads/fresh.jpg", Body=_jpeg(rocket))
    db = tmp_path / "reg.db"

    def run(*argv):
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run("fingerprint", "add", f"s3://{bucket}/train/", "--registry", db, "--label", "train-v1",
                         "--endpoint-url", seaweed.endpoint_url, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert sorted(res["added"]) == [f"s3://{bucket}/train/v1/astronaut.png", f"s3://{bucket}/train/v1/nested/coffee.png"]
    # unchanged objects (same ETag) are skipped; the endpoint comes from AWS_ENDPOINT_URL this time
    code, out, err = run("fingerprint", "add", f"s3://{bucket}/train/", "--registry", db, "--json")
    assert code == 0, err
    assert len(json.loads(out)["skipped_unchanged"]) == 2

    code, out, err = run("fingerprint", "match", f"s3://{bucket}/uploads/", "--registry", db, "--json",
                         "--endpoint-url", seaweed.endpoint_url)
    assert code == 0, err
    items = {r["uri"]: r for r in json.loads(out)["items"]}
    leak = items[f"s3://{bucket}/uploads/leak.jpg"]["matches"]
    assert leak and leak[0]["asset_id"] == f"s3://{bucket}/train/v1/nested/coffee.png"
    assert leak[0]["label"] == "train-v1"
    assert items[f"s3://{bucket}/uploads/fresh.jpg"]["matches"] == []

    code, _, _ = run("fingerprint", "match", f"s3://{bucket}/uploads/", "--registry", db, "--fail-on-match")
    assert code == 1
    code, _, err = run("fingerprint", "add", "s3://", "--registry", db)
    assert code == 2 and "Traceback" not in err
