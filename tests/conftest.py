"""Shared fixtures. Real local servers only (see s3sync/localserver.py); never in-process AWS mocks."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests never reach real AWS: no ambient credentials or profiles leak into them.
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_var, None)
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def seaweed():
    """A real SeaweedFS S3 server on 127.0.0.1 for the whole session."""
    from s3sync.localserver import SeaweedS3

    with SeaweedS3() as server:
        yield server


@pytest.fixture(scope="session")
def moto_server():
    """A real moto server (HTTP) on 127.0.0.1 for the whole session."""
    from s3sync.localserver import MotoServer

    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def sample_rgb():
    """A few real photographs that scikit-image ships, as RGB uint8 arrays."""
    from skimage import data

    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}
