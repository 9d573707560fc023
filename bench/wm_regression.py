"""Watermark regression set: (picture, attack) -> detect_rgb outcome (payload, bit errors), as JSON.

Run it for the detector before and after a change that should not change decisions, then compare:

    git archive HEAD | tar -x -C /tmp/base
    .venv/bin/python bench/wm_regression.py /tmp/base /tmp/before.json
    .venv/bin/python bench/wm_regression.py . /tmp/after.json && cmp /tmp/before.json /tmp/after.json

22 pictures (scikit-image at 512 and 700x525, synthetic), 18 attacks on the marked copy (from
none to crop 45 % + JPEG 45 + blur, shear 0.05 + JPEG 70, keystone 4 %) and 4 on the clean one; prints detections, false detections
and CPU time.

A third argument, ``rgb`` or ``luma`` (``rgb:png``, ``luma:png`` for PNG), stores every attacked
picture as a JPEG (quality 92, as a bucket would hold it) and decodes it the way the S3 audit does
(``s3sync.checks._decode``, in colour or straight to the luma plane), to compare the two decode
paths' outcomes.
"""
import io
import json
import sys
import time

root = sys.argv[1]
out = sys.argv[2]
via = sys.argv[3] if len(sys.argv) > 3 else None
sys.path.insert(0, root)
import numpy as np, cv2
from PIL import Image
import watermark
from watermark import image as wi
import os
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fixtures.make_media import image_array, photo
key = bytes(range(32)); payload = bytes.fromhex("0123456789abcdef")
def sk(name, size):
    return cv2.resize(photo(name), size, interpolation=cv2.INTER_AREA)
pics = {f"{n}-{s[0]}x{s[1]}": sk(n, s) for n in ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "hubble_deep_field", "retina")
        for s in ((512, 512), (700, 525))}
for i in range(6):
    pics[f"synth{i}"] = image_array((640 + 40 * i, 480), seed=i)
def jpeg(a, q):
    b = io.BytesIO(); Image.fromarray(a).save(b, "JPEG", quality=q); return np.asarray(Image.open(io.BytesIO(b.getvalue())).convert("RGB"))
def rot(a, d):
    h, w = a.shape[:2]; M = cv2.getRotationMatrix2D((w/2, h/2), d, 1.0); return cv2.warpAffine(a, M, (w, h), borderMode=cv2.BORDER_REFLECT)
def crop(a, f, ox=0.5, oy=0.5):
    h, w = a.shape[:2]; ch, cw = int(h*f**0.5), int(w*f**0.5); y=int((h-ch)*oy); x=int((w-cw)*ox); return np.ascontiguousarray(a[y:y+ch, x:x+cw])
def shear(a, sx=0.0, sy=0.0):
    h, w = a.shape[:2]; M = np.array([[1, sx, -sx * h / 2], [sy, 1, -sy * w / 2]], float)
    return cv2.warpAffine(a, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
def keystone(a, k):  # the top side shortened by 2k of the width
    h, w = a.shape[:2]
    M = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]),
                                    np.float32([[k * w, 0], [w - k * w, 0], [w, h], [0, h]]))
    return cv2.warpPerspective(a, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
attacks = {
    "none": lambda a: a, "jpeg50": lambda a: jpeg(a, 50), "resize0.6": lambda a: cv2.resize(a, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA),
    "crop70off": lambda a: crop(a, 0.7, 0.2, 0.8), "crop60": lambda a: crop(a, 0.6), "rot3": lambda a: rot(a, 3), "rot-6": lambda a: rot(a, -6),
    "hflip": lambda a: np.ascontiguousarray(a[:, ::-1]), "aspect1.25": lambda a: cv2.resize(a, None, fx=1.25, fy=1.0),
    "blur": lambda a: cv2.GaussianBlur(a, (0, 0), 1.2), "crop60rot5jpeg60": lambda a: jpeg(rot(crop(a, 0.6, 0.3, 0.3), 5), 60),
    "bright": lambda a: np.clip(a.astype(float)*1.25, 0, 255).astype(np.uint8),
    "hard1": lambda a: jpeg(rot(crop(a, 0.5, 0.8, 0.2), 7), 40),
    "hard2": lambda a: jpeg(cv2.resize(a, None, fx=0.22, fy=0.22, interpolation=cv2.INTER_AREA), 70),
    "hard3": lambda a: jpeg(rot(cv2.resize(a, None, fx=1.3, fy=0.9), -4), 35),
    "hard4": lambda a: cv2.GaussianBlur(jpeg(crop(a, 0.45, 0.1, 0.9), 45), (0, 0), 1.0),
    "shear5jpeg70": lambda a: jpeg(shear(a, 0.05), 70), "keystone4": lambda a: keystone(a, 0.04),
}
res = {}
t_clean = t_marked = 0.0
for pn, p in pics.items():
    m = watermark.embed(p, payload, key=key)
    for an, f in attacks.items():
        for kind, src in (("marked", m), ("clean", p)):
            if kind == "clean" and an not in ("none", "jpeg50", "crop60", "rot3"):
                continue
            img = f(src)
            if via:
                from s3sync.checks import _decode
                mode, _, fmt = via.partition(":")
                b = io.BytesIO(); Image.fromarray(img).save(b, fmt.upper() or "JPEG", **({} if fmt else {"quality": 92}))
                img = _decode(b.getvalue(), 512, luma=mode == "luma")
            t = time.process_time(); r = wi.detect_rgb(img, key); dt = time.process_time() - t
            if kind == "clean": t_clean += dt
            else: t_marked += dt
            res[f"{pn}|{an}|{kind}"] = None if r is None else [r[0].hex(), r[1]]
json.dump(res, open(out, "w"), indent=0, sort_keys=True)
n_m = sum(1 for k in res if k.endswith("marked")); ok = sum(1 for k, v in res.items() if k.endswith("marked") and v and v[0] == payload.hex())
fp = sum(1 for k, v in res.items() if k.endswith("clean") and v)
print(f"{root}: marked {ok}/{n_m} detected, clean false {fp}; CPU marked {t_marked:.1f}s clean {t_clean:.1f}s ({t_clean/ sum(1 for k in res if k.endswith('clean'))*1000:.0f} ms each)")
