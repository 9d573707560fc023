"""fixtures/make_media.py: every engineer's sample media must be deterministic, decodable and sized."""
from __future__ import annotations

import io

import numpy as np
import pytest

from fixtures import make_media
from provenance.media import decode_image, sniff_mime


@pytest.mark.parametrize("fmt", make_media.IMAGE_FORMATS)
def test_images_decode_at_the_requested_size(fmt):
    data = make_media.image_bytes(fmt, size=(96, 64), seed=5)
    assert decode_image(data).shape == (64, 96, 3)
    assert sniff_mime(data) == {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
                                "tiff": "image/tiff", "avif": "image/avif", "heic": "image/heic"}[fmt]


def test_images_are_deterministic_natural_and_seeded():
    a = make_media.image_array((128, 128), seed=1)
    assert np.array_equal(a, make_media.image_array((128, 128), seed=1))
    assert not np.array_equal(a, make_media.image_array((128, 128), seed=2))
    assert make_media.image_bytes("png", seed=3) == make_media.image_bytes("png", seed=3)
    assert a.std() > 20  # photographic content, not a flat fill
    coffee = make_media.image_array((64, 64), source="coffee")
    assert coffee.shape == (64, 64, 3)
    with pytest.raises(ValueError):
        make_media.image_bytes("bmp")


def test_video_and_audio():
    import av

    for fmt in make_media.VIDEO_FORMATS:
        data = make_media.video_bytes(fmt, seconds=0.25, fps=8, size=(64, 48))
        with av.open(io.BytesIO(data)) as c:
            assert sorted((s.type, s.codec_context.name) for s in c.streams) == [("audio", "aac"),
                                                                                 ("video", "h264")]
            frames = list(c.decode(video=0))
            assert len(frames) == 2 and frames[0].width == 64
    silent = make_media.video_bytes("mp4", seconds=0.25, fps=8, size=(64, 48), audio=False)
    with av.open(io.BytesIO(silent)) as c:
        assert [s.type for s in c.streams] == ["video"]
    assert sniff_mime(make_media.audio_bytes("wav", seconds=0.1)) == "audio/wav"
    assert sniff_mime(make_media.audio_bytes("mp3", seconds=0.1)) == "audio/mpeg"


def test_main_writes_a_sample_set(tmp_path, capsys):
    assert make_media.main([str(tmp_path)]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"sample.jpg", "sample.heic", "sample.mp4", "sample.mov", "sample.mp3"} <= names
    assert make_media.main([]) == 2
