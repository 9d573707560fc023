"""synthguard: one command over provenance, watermark and S3 audits.

Argument parsing, output formatting and exit codes live here; media logic lives in the rooms
(provenance/, watermark/, s3sync/). Exit codes: 0 success, 1 a check did not pass, 2 usage error.

Each command group has its own section below: ``_add_<group>(sub)`` registers the parser and sets
``func`` to a ``_cmd_<name>(args) -> int`` handler.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2, no traceback."""


# ----------------------------------------------------------------------------- shared helpers
def console(stderr: bool = False):
    """A rich Console (stderr for progress and messages, so stdout stays machine-readable)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def emit_json(obj: Any, out: str | None = None) -> None:
    """Write JSON to --out or stdout."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    write_text(text, out)


def write_text(text: str, out: str | None = None) -> None:
    if out and out != "-":
        try:
            with open(out, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:  # a directory, a missing parent, a read-only place: one line, exit 2
            raise UsageError(f"{out}: cannot write: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def check_out_path(out: str | None, what: str = "--out", *, directory: bool = False) -> None:
    """Refuse an output path that cannot be written before doing the work (an audit can take hours)."""
    if not out or out == "-":
        return
    if directory:
        if os.path.exists(out) and not os.path.isdir(out):
            raise UsageError(f"{what} {out}: exists and is not a directory")
        parent = os.path.dirname(os.path.abspath(out))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
            raise UsageError(f"{what} {out}: cannot create it (no writable parent directory)")
        return
    if os.path.isdir(out):
        raise UsageError(f"{what} {out}: is a directory")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise UsageError(f"{what} {out}: directory {parent} does not exist")
    if not os.access(out if os.path.exists(out) else parent, os.W_OK):
        raise UsageError(f"{what} {out}: not writable")


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (the same path, or links to one existing file)."""
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist yet
        return False


def show_progress(json_mode: bool) -> bool:
    """Progress bars only on an interactive terminal and never in JSON mode."""
    return (not json_mode) and sys.stderr.isatty()


def _parse_csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _add_aws_options(p: argparse.ArgumentParser) -> None:
    """The options boto3 users expect; AWS_* environment variables apply when they are omitted."""
    p.add_argument("--endpoint-url", default=None, help="AWS endpoint URL (else AWS_ENDPOINT_URL)")
    p.add_argument("--profile", default=None, help="AWS named profile")
    p.add_argument("--region", default=None, help="AWS region")


# ----------------------------------------------------------------------------- keys / sign / verify
# (provenance: issue 2)
_STATE_STYLE = {"trusted": "green", "valid_untrusted": "yellow", "invalid": "bold red", "missing": "red",
                "unsupported": "magenta", "error": "bold red"}


def _add_keys(sub) -> None:
    p = sub.add_parser("keys", help="development signing identities (C2PA)")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION")
    ks.required = True
    i = ks.add_parser("init", help="create a dev CA, a C2PA signing leaf and a watermark key in DIR")
    i.add_argument("dir", metavar="DIR")
    i.add_argument("--alg", default="ES256", help="leaf algorithm: ES256 (default), ES384, PS256, Ed25519")
    i.add_argument("--no-intermediate", action="store_true", help="issue the leaf straight from the root")
    i.add_argument("--cn", default="synthguard signer", help="leaf common name (signer shown by verify)")
    i.add_argument("--days", type=int, default=397, help="leaf lifetime in days (default 397)")
    i.add_argument("--force", action="store_true", help="replace existing keys in DIR")
    i.add_argument("--kms-key-id", default=None,
                   help="also issue DIR/kms-signer.pem for this AWS KMS key's public key")
    _add_aws_options(i)
    i.add_argument("--json", action="store_true", help="print the paths as JSON")
    i.set_defaults(func=_cmd_keys_init)


def _cmd_keys_init(args) -> int:
    from provenance import certs

    try:
        alg = certs.normalize_alg(args.alg)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.days < 1:
        raise UsageError("--days must be >= 1")
    if os.path.exists(args.dir) and not os.path.isdir(args.dir):
        raise UsageError(f"{args.dir}: exists and is not a directory")
    pub = None
    if args.kms_key_id:  # read the KMS public key first: a KMS failure must not leave half a key directory
        from provenance.kms import kms_client, kms_public_key

        client = kms_client(endpoint_url=args.endpoint_url, region=args.region, profile=args.profile)
        pub, _alg, _ = kms_public_key(args.kms_key_id, client)
    try:
        paths = certs.init_keys(args.dir, alg=alg, intermediate=not args.no_intermediate,
                                common_name=args.cn, leaf_days=args.days, overwrite=args.force)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    out = paths.to_dict()
    if pub is not None:
        chain = certs.issue_leaf_from_ca_files(pub, paths.ca_cert, paths.ca_key, common_name=args.cn,
                                               days=args.days)
        kms_path = paths.root.parent / "kms-signer.pem"
        kms_path.write_bytes(chain)
        out["kms_signer_cert"] = str(kms_path)
    if args.json:
        emit_json(out)
        return EXIT_OK
    labels = {"root": "trust anchor (give to verifiers)", "signer_cert": "signing chain",
              "signer_key": "signing key (0600)", "watermark_key": "watermark key (0600)",
              "ca_cert": "issuing CA", "ca_key": "issuing CA key (0600)",
              "kms_signer_cert": "KMS signing chain"}
    for k, v in out.items():
        print(f"{labels.get(k, k):34} {v}")
    return EXIT_OK


def _add_sign(sub) -> None:
    p = sub.add_parser("sign", help="embed a C2PA manifest (AI-generated) into media files")
    p.add_argument("input", metavar="INPUT", help="file, directory (signed recursively) or - for stdin")
    p.add_argument("-o", "--output", metavar="OUTPUT",
                   help="output file, directory (for a directory INPUT) or - for stdout")
    p.add_argument("--cert", default=os.environ.get("SYNTHGUARD_SIGNER_CERT"),
                   help="certificate chain PEM, leaf first (else SYNTHGUARD_SIGNER_CERT)")
    p.add_argument("--key", default=os.environ.get("SYNTHGUARD_SIGNER_KEY"),
                   help="PKCS#8 private key PEM (else SYNTHGUARD_SIGNER_KEY)")
    p.add_argument("--kms-key-id", default=None, help="sign with this AWS KMS key instead of --key")
    _add_aws_options(p)
    p.add_argument("--alg", default=None, help="signing algorithm (default: from the key)")
    p.add_argument("--model", default=None, help="generator model name")
    p.add_argument("--model-version", default=None, help="generator model version")
    p.add_argument("--prompt", default=None, help="prompt; only its SHA-256 is recorded")
    p.add_argument("--parent", default=None, metavar="FILE", help="add FILE as the parentOf ingredient")
    p.add_argument("--sidecar", action="store_true",
                   help="leave the asset unchanged and write the manifest to <output stem>.c2pa")
    p.add_argument("--thumbnail", action="store_true", help="embed a small thumbnail (off by default)")
    p.add_argument("--tsa-url", default=None, help="RFC 3161 time-stamp authority (production)")
    p.add_argument("--mime", default=None, help="media type when it cannot be sniffed")
    p.add_argument("--watermark-payload", default=None, metavar="HEX",
                   help="record this 8-byte watermark payload (16 hex chars) as a soft binding")
    p.add_argument("--watermark", action="store_true",
                   help="embed the invisible watermark into images first (payload: --watermark-payload, "
                        "else 8 random bytes per file), then sign with a soft binding to it")
    p.add_argument("--watermark-key-file", default=None, metavar="FILE",
                   help="watermark key (else SYNTHGUARD_WATERMARK_KEY_FILE, else the public key)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--json", action="store_true", help="print one JSON object per signed file")
    p.set_defaults(func=_cmd_sign)


def _prov_signer(args):
    from provenance import Signer

    if not args.cert:
        raise UsageError("--cert CHAIN.pem is required (or set SYNTHGUARD_SIGNER_CERT)")
    if args.kms_key_id:
        return Signer.from_kms(args.kms_key_id, args.cert, endpoint_url=args.endpoint_url,
                               region=args.region, profile=args.profile, tsa_url=args.tsa_url)
    if not args.key:
        raise UsageError("--key KEY.pem or --kms-key-id is required (or set SYNTHGUARD_SIGNER_KEY)")
    return Signer.from_files(args.cert, args.key, alg=args.alg, tsa_url=args.tsa_url)


def _prov_files(root: str, recursive: bool = True) -> list[str]:
    from pathlib import Path

    base = Path(root)
    it = base.rglob("*") if recursive else base.glob("*")
    # Regular files, and dangling symlinks (their error row says so instead of a silent gap);
    # FIFOs, sockets and devices are not media files (opening a FIFO would block).
    return sorted(str(p) for p in it
                  if not p.name.startswith(".") and (p.is_file() or (p.is_symlink() and not p.exists())))


def _cmd_sign(args) -> int:
    from pathlib import Path

    from provenance import sign
    from provenance.media import MediaError, mime_from_name
    from provenance.signing import SigningError, sidecar_path, sign_file, write_atomic

    payload = None
    if args.watermark_payload is not None:
        try:
            payload = bytes.fromhex(args.watermark_payload)
        except ValueError:
            raise UsageError("--watermark-payload must be hex") from None
        if len(payload) != 8:
            raise UsageError("--watermark-payload must be 8 bytes (16 hex characters)")
    wm_key = None
    if args.watermark:
        if args.sidecar:
            raise UsageError("--watermark changes the pixels; it cannot be combined with --sidecar")
        import watermark

        wm_key, _kind = watermark.resolve_key(args.watermark_key_file)
    src = args.input
    if src != "-" and not os.path.exists(src):
        raise UsageError(f"{src}: no such file or directory")
    is_dir = src != "-" and os.path.isdir(src)
    if not args.output:
        if not args.sidecar or src == "-" or is_dir:
            raise UsageError("-o OUTPUT is required")
        args.output = src
    if is_dir and args.output == "-":
        raise UsageError("a directory INPUT needs an output directory, not -")
    if is_dir and os.path.isfile(args.output):
        raise UsageError(f"{args.output}: is a file; a directory INPUT needs an output directory")
    if args.parent is not None:
        _prov_check_parent(args.parent)
    signer = _prov_signer(args)
    jobs: list[tuple[str, str]] = []
    if is_dir:
        for f in _prov_files(src):
            rel = os.path.relpath(f, src)
            jobs.append((f, os.path.join(args.output, rel)))
    else:
        out = args.output
        if out != "-" and os.path.isdir(out):
            out = os.path.join(out, os.path.basename(src) if src != "-" else "signed")
        jobs.append((src, out))
    kw = dict(signer=signer, model=args.model, model_version=args.model_version, prompt=args.prompt,
              parent=args.parent, watermark_payload=payload, thumbnail=args.thumbnail,
              tsa_url=args.tsa_url, mime=args.mime)
    failures = signed = skipped = not_media = 0
    for in_path, out_path in jobs:
        target = str(sidecar_path(out_path)) if args.sidecar and out_path != "-" else out_path
        if target != "-" and os.path.exists(target) and not args.force:
            # Includes signing in place: replacing a user's original needs an explicit --force.
            msg = f"{target}: exists (use --force to overwrite)"
            if not is_dir:
                raise UsageError(msg)
            print(f"synthguard: skip {msg}", file=sys.stderr)
            skipped += 1
            continue
        try:
            source, file_kw, result = in_path, kw, None
            if args.watermark:
                source, file_kw = _prov_watermark(in_path, payload, wm_key, kw, is_dir)
            if source != "-" and out_path != "-" and isinstance(source, str):
                sign_file(source, out_path, sidecar=args.sidecar, **file_kw)  # disk to disk, streamed
            else:
                result = sign(source, sidecar=args.sidecar, **file_kw)
        except (MediaError, SigningError) as exc:
            if not is_dir:
                raise
            if isinstance(exc, MediaError) and mime_from_name(in_path) is None:
                skipped += 1  # a non-media file in a tree of media: skip it quietly
                not_media += 1
                continue
            print(f"synthguard: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        if out_path == "-":
            sys.stdout.buffer.write(result)
            sys.stdout.buffer.flush()
        elif result is not None:
            if args.sidecar and in_path != "-" and os.path.abspath(out_path) != os.path.abspath(in_path):
                write_atomic(out_path, Path(in_path).read_bytes())  # the unchanged asset
            write_atomic(target, result)
        signed += 1
        if out_path != "-":
            if args.json:
                wp = file_kw.get("watermark_payload")
                print(json.dumps({"input": in_path, "output": out_path,
                                  "manifest": target if args.sidecar else None, "signer": signer.subject,
                                  "watermark_payload": wp.hex() if wp else None}))
            elif not is_dir:
                print(f"signed {in_path} -> {target}", file=sys.stderr)
    if is_dir and not signed and not failures and skipped == not_media:
        # Nothing signable at all (not "everything already signed"): as for a single non-media file
        # and 'fingerprint add' on a tree without media, a usage error, not "signed 0 file(s)".
        raise UsageError(f"{src}: no media files to sign"
                         + (f" ({not_media} file(s) are not media)" if not_media else " (no files found)"))
    if is_dir and not args.json:
        print(f"signed {signed} file(s) into {args.output}"
              + (f", {skipped} skipped" if skipped else "") + (f", {failures} failed" if failures else ""),
              file=sys.stderr)
    return EXIT_FAIL if failures else EXIT_OK


def _prov_check_parent(path: str) -> None:
    """Refuse a --parent that is missing or not media c2pa can take as an ingredient, before anything
    is signed: the type comes from the content (a text file named .jpg is not a JPEG) and raster
    images must decode."""
    from provenance.media import IMAGE_MIMES, MediaError, decode_image, sniff_mime
    from provenance.signing import supported_set

    what = f"--parent {path}"
    if path == "-":
        raise UsageError(f"{what}: the parent ingredient must be a file, not standard input")
    if os.path.isdir(path):
        raise UsageError(f"{what}: is a directory")
    if not os.path.isfile(path):
        raise UsageError(f"{what}: no such file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        raise UsageError(f"{what}: cannot read: {exc.strerror or exc}") from None
    if not head:
        raise UsageError(f"{what}: empty file")
    mime = sniff_mime(head)  # content only: the name's extension proves nothing
    if mime is None:
        raise UsageError(f"{what}: not a recognised media file")
    if mime not in supported_set():
        raise UsageError(f"{what}: unsupported media type {mime}")
    if mime in IMAGE_MIMES and mime != "image/svg+xml":
        try:
            decode_image(path)
        except MediaError as exc:
            raise UsageError(f"{what}: {str(exc).replace(str(path) + ': ', '', 1)}") from None


def _prov_watermark(in_path: str, payload, key, kw: dict, is_dir: bool):
    """(watermarked image bytes, sign kwargs with its soft binding); non-images in a directory are
    signed unmarked, with a note."""
    from provenance.media import IMAGE_MIMES, read_source, sniff_mime
    from provenance.signing import embed_watermark, has_manifest

    data, name = read_source(in_path)
    kind = sniff_mime(data[:1024], name)
    if is_dir and kind not in IMAGE_MIMES:
        if kind is not None:
            print(f"synthguard: note: {in_path}: not an image, signed without a watermark", file=sys.stderr)
        return data, kw
    pl = payload if payload is not None else os.urandom(8)
    src = data if in_path == "-" else in_path  # stdin is read once; a path keeps its name for messages
    marked = embed_watermark(src, pl, key=key, mime=kw.get("mime"))
    # Re-encoding drops the input's own manifest: a signed input is kept as the parent ingredient.
    parent = kw.get("parent")
    if parent is None and has_manifest(data, kind):
        parent = data
    return marked, {**kw, "watermark_payload": pl, "parent": parent}


def _add_verify(sub) -> None:
    p = sub.add_parser("verify", help="validate C2PA content credentials of media files")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, directories (with -r) or - for stdin")
    p.add_argument("--trust-anchors", default=os.environ.get("SYNTHGUARD_TRUST_ANCHORS"), metavar="PEM",
                   help="root certificate(s) to trust (else SYNTHGUARD_TRUST_ANCHORS)")
    p.add_argument("--allow-untrusted", action="store_true",
                   help="exit 0 for valid manifests from signers outside the trust anchors")
    p.add_argument("-r", "--recursive", action="store_true", help="verify directories recursively")
    p.add_argument("--mime", default=None, help="media type for - (stdin) when it cannot be sniffed")
    p.add_argument("--json", action="store_true", help="a JSON array, one object per file")
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args) -> int:
    from provenance import Verification, verify

    anchors = args.trust_anchors
    if anchors and not os.path.isfile(anchors):
        why = "is a directory, expected a PEM file" if os.path.isdir(anchors) else "no such file"
        raise UsageError(f"--trust-anchors {anchors}: {why}")
    if args.paths.count("-") > 1:
        raise UsageError("- (stdin) can be given once")
    targets: list[tuple[str, str | None]] = []  # (path as shown, path to read; None: nothing in it)
    for given in args.paths:
        if given != "-" and os.path.isdir(given):
            if not args.recursive:
                targets.append((given, given))  # becomes an error row: directory without -r
                continue
            files = [f for f in _prov_files(given) if not f.endswith(".c2pa")]
            targets.extend((f, f) for f in files)
            if not files:  # an empty tree verifies nothing: an error row that says so, never a pass
                targets.append((given, None))
        else:
            targets.append((given, given))
    rows: list[tuple[str, Verification]] = []
    for shown, path in targets:
        if path is None:
            rows.append((shown, Verification("error", reason="no files to verify in this directory")))
            continue
        if path != "-" and os.path.isdir(path):
            rows.append((shown, Verification("error", reason="is a directory (use -r)")))
            continue
        if path != "-" and not os.path.exists(path):
            dangling = os.path.islink(path)
            rows.append((shown, Verification("error", reason="dangling symlink" if dangling else "no such file")))
            continue
        if path != "-" and not os.path.isfile(path):  # a FIFO would block the read forever
            rows.append((shown, Verification("error", reason="not a regular file")))
            continue
        rows.append((shown, verify(path, trust_anchors=anchors, mime=args.mime)))
    ok_states = {"trusted", "valid_untrusted"} if args.allow_untrusted else {"trusted"}
    code = EXIT_OK if rows and all(v.state in ok_states for _, v in rows) else EXIT_FAIL
    if args.json:
        emit_json([{"path": shown, **v.to_dict()} for shown, v in rows])
        return code
    _prov_table(rows, anchors)
    return code


def _prov_table(rows, anchors) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    for col in ("path", "state", "AI", "model", "signer", "signed at", "codes / reason"):
        table.add_column(col, overflow="fold")
    for shown, v in rows:
        ai = "-" if v.ai_generated is None else ("yes" if v.ai_generated else "no")
        model = v.model + (f" {v.model_version}" if v.model_version else "") if v.model else "-"
        detail = ", ".join(v.codes)
        if v.reason and v.state not in ("trusted",):
            detail = f"{detail}: {v.reason}" if detail and v.state == "invalid" else (detail or v.reason)
        # Paths, manifest fields and reasons are escaped: rich would read "[...]" in them as markup.
        table.add_row(escape(shown), f"[{_STATE_STYLE.get(v.state, '')}]{v.state}[/]", ai, escape(model),
                      escape(v.signer or "-"), escape(v.signed_at or "-"),
                      escape(detail if len(detail) <= 160 else detail[:157] + "..."))
    con = console()
    con.print(table)
    counts: dict[str, int] = {}
    for _, v in rows:
        counts[v.state] = counts.get(v.state, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    con.print(f"{len(rows)} file(s): {summary}" + ("" if anchors else "  (no --trust-anchors given)"))


# ----------------------------------------------------------------------------- watermark
# (watermark: issue 3)
def _add_watermark(sub) -> None:
    wm = sub.add_parser("watermark", help="embed or detect the invisible watermark (images and videos)")
    ws = wm.add_subparsers(dest="wm_command", metavar="ACTION")
    ws.required = True
    e = ws.add_parser("embed", help="write a marked copy of IN to OUT")
    e.add_argument("input", metavar="IN", help="image or video file, or - for an image on stdin")
    e.add_argument("output", metavar="OUT")
    e.add_argument("--payload", required=True, metavar="HEX", help="8 bytes as 16 hex characters")
    e.add_argument("--key-file", default=None, help="secret key file (else $SYNTHGUARD_WATERMARK_KEY_FILE, "
                   "else the built-in public key)")
    e.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    e.add_argument("--json", action="store_true", help="print a JSON object")
    e.set_defaults(func=_cmd_watermark_embed)
    d = ws.add_parser("detect", help="look for the watermark in images or videos")
    d.add_argument("files", nargs="+", metavar="FILE")
    d.add_argument("--key-file", default=None, help="secret key file (else $SYNTHGUARD_WATERMARK_KEY_FILE, "
                   "else the built-in public key)")
    d.add_argument("--max-frames", type=int, default=12, help="video frames sampled (default 12)")
    d.add_argument("--json", action="store_true", help="print a JSON array, one object per file")
    d.set_defaults(func=_cmd_watermark_detect)


def _wm_key(args):
    import watermark

    try:
        return watermark.resolve_key(args.key_file)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _wm_input(path: str) -> tuple[bytes | str, bool]:
    """(source, is_video) for one IN/FILE argument: "-" is read from stdin once; a path is sniffed from
    its first bytes only, so a large video is not read into memory just to learn its type."""
    from provenance.media import VIDEO_MIMES, sniff_mime

    if path == "-":
        data = sys.stdin.buffer.read()
        if not data:
            raise UsageError("-: standard input is empty")
        return data, sniff_mime(data) in VIDEO_MIMES
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory")
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(64)
    return path, sniff_mime(head, path) in VIDEO_MIMES


def _cmd_watermark_embed(args) -> int:
    import watermark

    try:
        payload = bytes.fromhex(args.payload)
    except ValueError:
        raise UsageError("--payload must be hex") from None
    if len(payload) != watermark.PAYLOAD_BYTES:
        raise UsageError(f"--payload must be {watermark.PAYLOAD_BYTES} bytes (16 hex characters)")
    source, is_video = _wm_input(args.input)
    if args.input != "-" and _same_file(args.input, args.output):
        raise UsageError("OUT must differ from IN (the input is never modified)")
    check_out_path(args.output, "OUT")
    if os.path.exists(args.output) and not args.force:
        raise UsageError(f"{args.output}: exists (use --force to overwrite it)")
    if is_video and not isinstance(source, str):
        raise UsageError("videos are read from a file, not from standard input")
    key, kind = _wm_key(args)
    if is_video:
        from watermark import video

        frames = video.embed(source, args.output, payload, key=key)
        info = {"path": args.output, "kind": "video", "frames": frames}
    else:
        from watermark.io import save_image

        marked = watermark.embed(source, payload, key=key)
        try:
            save_image(marked, args.output)
        except (ValueError, KeyError) as exc:  # Pillow: unknown extension / unsupported mode
            raise UsageError(f"{args.output}: cannot write this image format ({exc or 'unknown extension'})") from None
        info = {"path": args.output, "kind": "image", "size": [int(marked.shape[1]), int(marked.shape[0])]}
    info.update({"payload": payload.hex(), "key_kind": kind})
    if args.json:
        emit_json(info)
    else:
        console().print(f"{args.output}: marked ({info['kind']}, payload {payload.hex()}, {kind} key)", markup=False)
    return EXIT_OK


def _cmd_watermark_detect(args) -> int:
    import watermark

    if args.max_frames < 1:
        raise UsageError("--max-frames must be >= 1")
    if args.files.count("-") > 1:
        raise UsageError("- (standard input) can be given once")
    key, kind = _wm_key(args)
    rows = []
    for path in args.files:
        row = {"path": path, "detected": False, "payload": None, "key_kind": kind, "bit_errors": None,
               "false_positive_probability": None, "error": None}
        try:
            source, is_video = _wm_input(path)
            if is_video:
                from watermark import video

                det = video.detect(source, key=key, max_frames=args.max_frames)
            else:
                det = watermark.detect(source, key=key)
            row.update(det.to_dict())
        except UsageError as exc:
            row["error"] = str(exc)
        except Exception as exc:  # one bad file must not hide the others' answers
            row["error"] = str(exc) or type(exc).__name__
        rows.append(row)
    if args.json:
        emit_json(rows)
    else:
        con = console()
        for r in rows:
            if r["error"]:
                con.print(f"{r['path']}: error: {r['error']}", markup=False)
            elif r["detected"]:
                con.print(f"{r['path']}: watermark {r['payload']} ({kind} key, {r['bit_errors']} bit errors)", markup=False)
            else:
                con.print(f"{r['path']}: no watermark ({kind} key)", markup=False)
    return EXIT_OK if rows and all(r["detected"] for r in rows) else EXIT_FAIL


# ----------------------------------------------------------------------------- audit
# (s3sync: issue 4)
def _add_audit(sub) -> None:
    p = sub.add_parser(
        "audit", help="audit S3 buckets / CloudFront origins for media without provenance",
        description="Audit every object of s3://bucket[/prefix] or cloudfront:DIST_ID|all targets: C2PA state, "
                    "watermark and training-asset matches, classified per object. Read-only. The posture checks "
                    "of 'synthguard posture' also run for the audited buckets of s3:// targets (--no-posture skips "
                    "them; findings never abort the audit; --fail-severity gates on them). "
                    "'synthguard audit report --state DB' renders a stored run.")
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="s3://bucket[/prefix], cloudfront:DIST_ID or cloudfront:all (or 'report' to render a stored run)")
    _add_aws_options(p)
    p.add_argument("--trust-anchors", metavar="PEM", help="root certificate(s) whose C2PA signers are trusted")
    p.add_argument("--watermark-key-file", metavar="F", help="watermark key (as written by 'synthguard keys init')")
    p.add_argument("--registry", metavar="DB", help="training-asset fingerprint registry to match against")
    p.add_argument("--state", metavar="DB", default=os.path.join(".synthguard", "state.db"),
                   help="SQLite state (results, runs, resume); default .synthguard/state.db")
    p.add_argument("--workers", type=int, default=16, metavar="N", help="concurrent S3 requests (I/O threads)")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="processes for CPU checks (decode, C2PA, watermark); 0 = inline in the auditing process "
                        "(no crash isolation, no --check-timeout); default: CPU count")
    p.add_argument("--check-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="stop an object's checks after this long (its process is replaced, the object is "
                        "unreadable); 0 = no limit; default 600 (with --processes >= 1)")
    p.add_argument("--format", default="table", choices=("table", "json", "jsonl", "csv", "sarif", "html"))
    p.add_argument("--out", metavar="PATH", help="write the report here instead of stdout")
    p.add_argument("--fail-on", type=_parse_csv, default=[], metavar="LIST",
                   help="exit 1 when any object is one of: missing,invalid,untrusted,leak,unreadable,watermark_only; "
                        "edge: when a CloudFront edge sample lost its origin's provenance")
    p.add_argument("--full", action="store_true", help="re-check every object (default: skip unchanged ETags)")
    p.add_argument("--versions", action="store_true", help="audit every object version (ListObjectVersions)")
    p.add_argument("--no-watermark", action="store_true", help="skip watermark detection (C2PA only)")
    p.add_argument("--watermark-trust-manifest", action="store_true",
                   help="for trusted manifests that record the watermark payload, report it without searching "
                        "the pixels (faster; no longer proves the pixels carry the mark)")
    p.add_argument("--watermark-search", choices=("auto", "full", "own"), default="auto",
                   help="auto (default): objects with a trusted C2PA manifest (bytes proven unedited since signing) "
                        "get the quick own-position watermark check, the full search only when the manifest claims "
                        "a watermark it did not find; full: search every image for cropped/rotated marks; own: the "
                        "quick check everywhere (finds resized/re-encoded/flipped copies, not crops or rotations)")
    p.add_argument("--no-resume", action="store_true", help="start a new run even if the last one was interrupted")
    p.add_argument("--sample-edge", type=int, default=0, metavar="N",
                   help="for cloudfront: targets, fetch N objects per distribution through its domain")
    p.add_argument("--edge-url-map", action="append", default=[], metavar="DOMAIN=URL",
                   help="fetch a distribution domain from this base URL instead (tests, staging); "
                        "repeatable; also SYNTHGUARD_EDGE_URL_MAP='D1=URL1,D2=URL2'")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--posture", dest="posture", action="store_true",
                   help="also run the posture checks (as 'synthguard posture') for the buckets behind cloudfront: "
                        "targets (default: only for the buckets of s3:// targets)")
    g.add_argument("--no-posture", dest="posture", action="store_false",
                   help="skip the posture checks of the audited buckets")
    p.add_argument("--posture-config", metavar="TOML",
                   help="synthguard.toml ([posture] table) for the posture checks: classes, owners, allowed principals")
    p.add_argument("--fail-severity", default="none", metavar="SEV",
                   help="exit 1 when a failed posture finding is at or above: informational,low,medium,high,critical "
                        "(default none: posture findings are reported, they do not fail the audit)")
    p.add_argument("--run", metavar="RUN_ID", help="with 'report': the run to render (default: the latest)")
    p.set_defaults(func=_cmd_audit, posture=None)


def _cmd_audit(args) -> int:
    from s3sync.models import FAIL_ON
    from s3sync.reports import render

    bad = [f for f in args.fail_on if f not in FAIL_ON]
    if bad:
        raise UsageError(f"--fail-on: unknown {', '.join(bad)} (choose from {', '.join(FAIL_ON)})")
    if args.fail_severity.lower() != "none":
        from s3sync.posture.models import severity_rank

        try:
            severity_rank(args.fail_severity)
        except ValueError as exc:
            raise UsageError(f"--fail-severity: {exc}") from None
    if args.workers < 1 or (args.processes is not None and args.processes < 0) or args.sample_edge < 0:
        raise UsageError("--workers must be >= 1, --processes and --sample-edge >= 0")
    if not args.check_timeout >= 0:  # also refuses nan
        raise UsageError("--check-timeout must be >= 0 seconds (0: no limit)")
    check_out_path(args.out)  # before the audit, not after it
    for flag, path in (("--state", args.state), ("--registry", args.registry), ("--trust-anchors", args.trust_anchors),
                       ("--watermark-key-file", args.watermark_key_file), ("--posture-config", args.posture_config)):
        if args.out and args.out != "-" and path and _same_file(args.out, path):
            raise UsageError(f"--out {args.out} is the {flag} file: the report would overwrite it")
    if args.sample_edge:  # a malformed DOMAIN=URL is a usage error now, not after the whole audit
        from s3sync.cloudfront import parse_edge_url_map

        parse_edge_url_map(args.edge_url_map)
    if args.targets[:1] == ["report"]:
        if len(args.targets) > 1:
            raise UsageError("audit report takes no targets (use --state and --run)")
        from s3sync.state import State

        if not os.path.exists(args.state):
            raise UsageError(f"state DB not found: {args.state}")
        with State(args.state, create=False) as st:
            result = st.load_run(args.run)
    else:
        if not args.targets:
            raise UsageError("give at least one target: s3://bucket[/prefix] or cloudfront:DIST_ID|all")
        from s3sync.worker import Auditor

        procs = args.processes if args.processes is not None else (os.cpu_count() or 1)
        auditor = Auditor(args.targets, endpoint_url=args.endpoint_url, profile=args.profile, region=args.region,
                          trust_anchors=args.trust_anchors, watermark_key_file=args.watermark_key_file,
                          registry=args.registry, state=args.state, workers=args.workers, processes=procs,
                          check_timeout=args.check_timeout, full=args.full, versions=args.versions,
                          watermark=not args.no_watermark,
                          watermark_trust_manifest=args.watermark_trust_manifest,
                          watermark_search=args.watermark_search, resume=not args.no_resume, sample_edge=args.sample_edge,
                          edge_url_map=args.edge_url_map or None, posture=args.posture,
                          posture_config=args.posture_config)
        _audit_check_cloudfront(args.targets, auditor)
        if args.sample_edge and not auditor.origins:
            print("synthguard: warning: --sample-edge applies to cloudfront: targets; none here", file=sys.stderr)
        if show_progress(args.format in ("json", "jsonl")):
            from s3sync.reports.progress import AuditProgress

            with AuditProgress(console(stderr=True)) as bar:
                auditor.progress = bar.update
                result = auditor.result()
        else:
            result = auditor.result()
    color = args.format == "table" and not args.out and sys.stdout.isatty()
    write_text(render(result, args.format, color=color), args.out)
    posture = result.summary.get("posture") or {}
    if posture.get("error"):
        print(f"synthguard: warning: {posture['error']} (the audit itself completed)", file=sys.stderr)
    if args.format == "csv":  # CSV rows are objects; findings and edge samples get files of their own
        from s3sync.reports.csvfmt import edge_samples_to_csv, findings_to_csv

        for items, what, suffix, to_text in ((result.findings, "posture findings", ".findings.csv", findings_to_csv),
                                             (result.edge_samples, "CloudFront edge samples", ".edge.csv",
                                              edge_samples_to_csv)):
            if not items:
                continue
            if args.out and args.out != "-":
                side = os.path.splitext(args.out)[0] + suffix
                write_text(to_text(result), side)
                print(f"synthguard: {len(items)} {what} written to {side}", file=sys.stderr)
            else:
                print(f"synthguard: {len(items)} {what} are not in CSV on stdout "
                      f"(use --out PATH for PATH{suffix}, or --format json)", file=sys.stderr)
    if args.out and args.out != "-":
        c = result.summary.get("counts", {})
        s = result.summary
        how = f", {s.get('downloaded', 0)} downloaded, {s.get('reused', 0)} unchanged" if "downloaded" in s else ""
        print(f"synthguard: {len(result.objects)} objects ({', '.join(f'{n} {k}' for k, n in c.items() if n)}{how}); "
              f"report written to {args.out}", file=sys.stderr)
    if args.fail_on and result.failed(args.fail_on):
        return EXIT_FAIL
    return EXIT_FAIL if result.failed_findings(args.fail_severity) else EXIT_OK


def _audit_check_cloudfront(specs: Sequence[str], auditor) -> None:
    """Resolve ``cloudfront:`` targets before the run (the auditor keeps the answer) and refuse an
    audit with nothing to audit: ``cloudfront:all`` in an account without distributions (or only
    non-S3 origins) must not pass a release gate silently. With other targets left it is a warning."""
    from s3sync.cloudfront import is_cloudfront_spec

    cf_specs = [t for t in specs if is_cloudfront_spec(t)]
    targets = auditor.resolve_targets()
    if not cf_specs or auditor.origins:
        return
    skipped = auditor.skipped_origins
    if skipped:
        why = (f"no S3 origins to audit ({len(skipped)} origin(s) skipped: "
               + "; ".join(f"{s.distribution_id}/{s.origin_id} {s.origin_domain}: {s.reason}" for s in skipped[:3])
               + (" ..." if len(skipped) > 3 else "") + ")")
    elif any(t.split(":", 1)[1].strip().lower() == "all" for t in cf_specs):
        why = "no CloudFront distributions found"
    else:
        why = "no S3 origins to audit"
    msg = f"{', '.join(cf_specs)}: {why}"
    if not targets:
        raise UsageError(f"{msg}; nothing to audit")
    print(f"synthguard: warning: {msg}; auditing the other targets only", file=sys.stderr)


# ----------------------------------------------------------------------------- fingerprint
# (training-asset registry: issue 5)
def _add_fingerprint(sub) -> None:
    p = sub.add_parser("fingerprint", help="register training assets and find leaked copies",
                       description="Perceptual fingerprints of training assets in a SQLite registry. "
                                   "'match' exits 0 when it ran (matches or not); with --fail-on-match it "
                                   "exits 1 when anything matched.")
    fsub = p.add_subparsers(dest="fp_command", metavar="ACTION")
    fsub.required = True
    for name, helptext in (("add", "fingerprint files / S3 objects into the registry (recursive)"),
                           ("match", "look files / S3 objects up in the registry")):
        q = fsub.add_parser(name, help=helptext)
        q.add_argument("target", metavar="PATH|s3://bucket/prefix")
        q.add_argument("--registry", required=True, metavar="DB", help="registry database (SQLite file)")
        q.add_argument("--json", action="store_true", help="JSON output on stdout")
        q.add_argument("--max-frames", type=int, default=16, help="video: frames sampled (default 16)")
        _add_aws_options(q)
        if name == "add":
            q.add_argument("--label", default=None, help="dataset name/version recorded with each asset")
            q.add_argument("--force", action="store_true", help="re-fingerprint unchanged files too")
            q.set_defaults(func=_cmd_fingerprint_add)
        else:
            q.add_argument("--threshold", type=int, default=None, help="override the calibrated threshold")
            q.add_argument("-k", type=int, default=1, help="matches listed per item (default 1)")
            q.add_argument("--fail-on-match", action="store_true", help="exit 1 when anything matched")
            q.set_defaults(func=_cmd_fingerprint_match)
    q = fsub.add_parser("rehash", help="recompute a registry's fingerprints with this synthguard's algorithm",
                        description="Re-reads every asset from its recorded source (local path, file:// or s3://) "
                                    "and replaces its fingerprints; nothing changes unless all sources are read "
                                    "(or --drop-unreadable). Exit 1 when some source could not be read.")
    q.add_argument("--registry", required=True, metavar="DB", help="registry database (SQLite file)")
    q.add_argument("--json", action="store_true", help="JSON output on stdout")
    q.add_argument("--max-frames", type=int, default=16, help="video: frames sampled (default 16)")
    q.add_argument("--drop-unreadable", action="store_true", help="remove assets whose source cannot be read")
    _add_aws_options(q)
    q.set_defaults(func=_cmd_fingerprint_rehash)


def _fp_s3_client(args):
    try:
        from s3sync.aws import ClientFactory

        return ClientFactory.from_args(args).client("s3")
    except ImportError:
        import boto3

        session = boto3.Session(profile_name=args.profile) if args.profile else boto3.Session()
        return session.client("s3", endpoint_url=args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
                              region_name=args.region)


def _fp_items(args):
    from provenance.registry import iter_sources

    s3 = _fp_s3_client(args) if args.target.startswith("s3://") else None
    items = iter_sources(args.target, s3)
    if not items:
        raise UsageError(f"{args.target}: no image or video files found")
    return s3, items


def _fp_progress(args, total: int, verb: str):
    if not show_progress(args.json):
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(TextColumn(f"[bold]{verb}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console(stderr=True), transient=True)
    prog.start()
    prog.add_task(verb, total=total)
    return prog


def _cmd_fingerprint_add(args) -> int:
    from provenance.fingerprints import fingerprint_media
    from provenance.registry import Registry

    if args.max_frames < 1:
        raise UsageError("--max-frames must be >= 1")
    s3, items = _fp_items(args)
    added, skipped, failed = [], [], []
    prog = _fp_progress(args, len(items), "fingerprint add")
    try:
        with Registry(args.registry) as reg:
            for it in items:
                try:
                    if not args.force and reg.unchanged(it.uri, etag=it.etag, size=it.size, mtime=it.mtime):
                        skipped.append(it.uri)
                        continue
                    kind, fps = fingerprint_media(it.read(s3), it.name, max_frames=args.max_frames)
                    reg.add_frames(it.uri, fps, kind=kind, source_uri=it.uri, label=args.label,
                                   etag=it.etag, size=it.size, mtime=it.mtime)
                    added.append(it.uri)
                except Exception as exc:  # one bad file must not stop a bulk registration
                    from provenance.media import MediaError

                    if not isinstance(exc, (MediaError, OSError, ValueError)) and not type(exc).__module__.startswith("botocore"):
                        raise
                    failed.append({"uri": it.uri, "error": str(exc)})
                finally:
                    if prog:
                        prog.advance(prog.task_ids[0])
            total = len(reg)
    finally:
        if prog:
            prog.stop()
    if args.json:
        emit_json({"registry": args.registry, "added": added, "skipped_unchanged": skipped, "failed": failed,
                   "assets_total": total})
    else:
        for f in failed:
            print(f"synthguard: warning: {f['uri']}: {f['error']}", file=sys.stderr)
        print(f"added {len(added)}, skipped {len(skipped)} unchanged, failed {len(failed)}; "
              f"{total} assets in {args.registry}")
    return EXIT_FAIL if failed else EXIT_OK


def _cmd_fingerprint_match(args) -> int:
    from provenance.fingerprints import fingerprint_media
    from provenance.registry import Registry

    if os.path.isdir(args.registry):
        raise UsageError(f"{args.registry}: is a directory, expected a registry database file")
    if not os.path.isfile(args.registry):
        raise UsageError(f"{args.registry}: registry not found (create it with 'synthguard fingerprint add')")
    if args.k < 1 or args.max_frames < 1:
        raise UsageError("-k and --max-frames must be >= 1")
    if args.threshold is not None and args.threshold < 0:
        raise UsageError("--threshold must be >= 0 (a Hamming distance)")
    s3, items = _fp_items(args)
    results, n_matched, n_failed = [], 0, 0
    prog = _fp_progress(args, len(items), "fingerprint match")
    try:
        with Registry(args.registry, threshold=args.threshold) as reg:
            for it in items:
                row: dict[str, Any] = {"uri": it.uri, "matches": []}
                try:
                    kind, fps = fingerprint_media(it.read(s3), it.name, max_frames=args.max_frames)
                    ms = reg.match_video(fps, k=args.k) if kind == "video" else reg.match(fps[0], k=args.k)
                    row["kind"] = kind
                    row["matches"] = [m.to_dict() for m in ms]
                    n_matched += bool(ms)
                except Exception as exc:
                    from provenance.media import MediaError

                    if not isinstance(exc, (MediaError, OSError, ValueError)) and not type(exc).__module__.startswith("botocore"):
                        raise
                    row["error"] = str(exc)
                    n_failed += 1
                results.append(row)
                if prog:
                    prog.advance(prog.task_ids[0])
    finally:
        if prog:
            prog.stop()
    if args.json:
        emit_json({"registry": args.registry, "threshold": args.threshold, "items": results,
                   "matched": n_matched, "failed": n_failed})
    else:
        for r in results:
            if "error" in r:
                print(f"{r['uri']}\terror: {r['error']}")
            elif not r["matches"]:
                print(f"{r['uri']}\tno match")
            for m in r["matches"]:
                extra = f"\tframes {m['frames_matched']}/{m['frames_total']}" if "frames_total" in m else ""
                print(f"{r['uri']}\t{m['asset_id']}\tdistance {m['distance']}\tconfidence {m['confidence']:.4f}"
                      f"\tlabel {m['label'] or '-'}{extra}")
        print(f"{n_matched} of {len(results)} matched", file=sys.stderr)
    if args.fail_on_match and n_matched:
        return EXIT_FAIL
    return EXIT_FAIL if n_failed and n_failed == len(results) else EXIT_OK


def _cmd_fingerprint_rehash(args) -> int:
    from provenance.registry import Registry

    if not os.path.isfile(args.registry):
        raise UsageError(f"{args.registry}: registry not found")
    if args.max_frames < 1:
        raise UsageError("--max-frames must be >= 1")
    with Registry(args.registry, check_algorithm=False) as reg:
        prog = _fp_progress(args, len(reg), "fingerprint rehash")
        try:
            res = reg.rehash(s3=lambda: _fp_s3_client(args), max_frames=args.max_frames, drop_unreadable=args.drop_unreadable,
                             progress=(lambda done, total: prog.update(prog.task_ids[0], completed=done)) if prog else None)
        finally:
            if prog:
                prog.stop()
        total = len(reg)
    if args.json:
        emit_json({"registry": args.registry, **res.to_dict(), "assets_total": total})
    else:
        for f in res.failed:
            print(f"synthguard: warning: {f['asset_id']}: {f['source_uri'] or '-'}: {f['error']}", file=sys.stderr)
        state = (f"recorded {res.algorithm}" if res.applied else
                 "registry unchanged (fix or remove the failed sources and run again, or pass --drop-unreadable)")
        print(f"rehashed {len(res.rehashed) + len(res.reused)}, failed {len(res.failed)}, dropped {len(res.dropped)}; "
              f"{state}; {total} assets in {args.registry}")
    return EXIT_FAIL if res.failed or not res.applied else EXIT_OK


# ----------------------------------------------------------------------------- posture / controls
# (posture: issue 6)
def _add_posture(sub) -> None:
    from s3sync.posture.reports import FORMATS

    p = sub.add_parser(
        "posture", help="leak-exposure posture of synthetic-media buckets (S3, CloudFront, IAM, EC2, KMS, ...)",
        description="Check the AWS estate around synthetic-media and training-data buckets (tag synthguard:class "
                    "or synthguard.toml). Findings are pass/fail/unknown with the API evidence. Exit 1 when a failed "
                    "finding is at or above --fail-severity (default: any failed finding; 'none' never fails). "
                    "--remediate prints the API calls as JSON lines (dry run) unless --apply is given; findings then "
                    "go only to --out.")
    p.add_argument("--config", metavar="TOML", help="synthguard.toml ([posture] table): buckets, classes, owners, "
                                                   "allowed principals")
    _add_aws_options(p)
    p.add_argument("--bucket", action="append", default=[], metavar="NAME",
                   help="only these buckets (repeatable; still scoped by tags/config)")
    p.add_argument("--format", default="table", choices=FORMATS)
    p.add_argument("--out", metavar="PATH", help="write the findings here instead of stdout")
    p.add_argument("--checks", type=_parse_csv, default=None, metavar="IDS", help="only these check ids (globs ok)")
    p.add_argument("--exclude-checks", type=_parse_csv, default=None, metavar="IDS", help="skip these check ids")
    p.add_argument("--fail-severity", default="informational", metavar="SEV",
                   help="exit 1 on a failed finding at or above: informational,low,medium,high,critical or none")
    p.add_argument("--fail-on-unknown", action="store_true",
                   help="also exit 1 when a check could not decide (API unavailable, denied, not implemented)")
    p.add_argument("--remediate", metavar="LIST", help="legal-hold,tag,block-public-access")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dry-run", dest="apply", action="store_false", default=False,
                   help="print the remediation API calls as JSON lines (default)")
    g.add_argument("--apply", "--no-dry-run", dest="apply", action="store_true", help="perform the remediation calls")
    p.add_argument("--remediation-log", default=os.path.join(".synthguard", "remediation.jsonl"), metavar="PATH",
                   help="append applied calls and their results here (default .synthguard/remediation.jsonl)")
    p.add_argument("--security-hub", action="store_true", help="also import the findings into Security Hub (ASFF)")
    p.add_argument("--snapshot-out", metavar="PATH", help="also write the collected API answers (JSON) here")
    p.add_argument("--list-checks", action="store_true", help="list check ids and exit")
    p.set_defaults(func=_cmd_posture)


def _cmd_posture(args) -> int:
    from s3sync.posture import Clients, failed_at_or_above, load_config, run_checks, severity_rank
    from s3sync.posture.checks import CHECK_IDS, REGISTRY, needs_for
    from s3sync.posture.collect import collect
    from s3sync.posture.reports import import_to_security_hub, render, to_asff

    if args.list_checks:
        for cid in CHECK_IDS:
            m = REGISTRY[cid][0]
            print(f"{cid:34} {m.severity:9} {m.title}")
        return EXIT_OK
    if args.fail_severity.lower() != "none":
        try:
            severity_rank(args.fail_severity)
        except ValueError as exc:
            raise UsageError(f"--fail-severity: {exc}") from None
    actions = None
    if args.remediate:
        from s3sync.posture.remediate import parse_actions

        try:
            actions = parse_actions(args.remediate)
        except ValueError as exc:
            raise UsageError(f"--remediate: {exc}") from None
    elif args.apply:
        raise UsageError("--apply needs --remediate LIST")
    check_out_path(args.out)
    check_out_path(args.snapshot_out, "--snapshot-out")
    cfg = load_config(args.config)
    clients = Clients.from_args(args)
    snap = collect(clients, cfg, buckets=args.bucket or None, needs=needs_for(args.checks, args.exclude_checks))
    unreachable = ("EndpointConnectionError", "ConnectTimeoutError", "NoCredentialsError", "NoRegionError",
                   "ConnectionClosedError", "ReadTimeoutError", "ProxyConnectionError")
    listing = snap.scope_errors.get("*", "")
    # AWS not reachable at all: every check is 'unknown'; exit 0 would read as a pass in CI.
    no_aws = any(f": {code}:" in listing or listing.endswith(f": {code}") for code in unreachable)
    findings = run_checks(snap, checks=args.checks, exclude=args.exclude_checks)
    if args.snapshot_out:
        emit_json(snap.to_dict(), args.snapshot_out)
    rc = EXIT_FAIL if failed_at_or_above(findings, args.fail_severity) else EXIT_OK
    if (args.fail_on_unknown or no_aws) and any(f.status.value == "unknown" for f in findings):
        rc = EXIT_FAIL
    for name, reason in snap.scope_errors.items():
        what = "the estate could not be listed" if name == "*" else f"scope of bucket {name} undecided (tags unreadable)"
        print(f"synthguard: warning: {what}: {reason}", file=sys.stderr)
    if actions is None or args.out:
        write_text(render(findings, args.format, out_of_scope=len(snap.out_of_scope), account_id=snap.account_id,
                          region=snap.region, scope_errors=snap.scope_errors), args.out)
    if args.security_hub:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            res = import_to_security_hub(to_asff(findings, snap.account_id, snap.region), clients("securityhub"))
            print(f"synthguard: imported {res['success']} findings into Security Hub, {len(res['failed'])} failed",
                  file=sys.stderr)
            if res["failed"]:
                rc = EXIT_FAIL
        except (ClientError, BotoCoreError) as exc:
            from s3sync.aws import describe_error

            print(f"synthguard: Security Hub import failed: {describe_error(exc)}", file=sys.stderr)
            rc = EXIT_FAIL
    fails = sum(f.failed for f in findings)
    print(f"synthguard: {len(snap.buckets)} buckets in scope, {len(snap.out_of_scope)} out of scope; "
          f"{fails} failed, {sum(f.status.value == 'unknown' for f in findings)} unknown, "
          f"{sum(f.status.value == 'pass' for f in findings)} passed", file=sys.stderr)
    if actions is not None:
        from s3sync.posture.remediate import apply, plan

        todo, skipped = plan(snap, actions)
        for s in skipped:
            print(f"synthguard: remediation skipped: {json.dumps(s.to_dict())}", file=sys.stderr)
        if not args.apply:
            for a in todo:
                sys.stdout.write(a.to_json_line() + "\n")
            print(f"synthguard: dry run: {len(todo)} call(s); add --apply to perform them", file=sys.stderr)
        else:
            results = apply(todo, clients, args.remediation_log)
            for r in results:
                sys.stdout.write(json.dumps(r) + "\n")
            errs = sum(r["result"] != "ok" for r in results)
            print(f"synthguard: applied {len(results) - errs} call(s), {errs} failed; logged to "
                  f"{args.remediation_log}", file=sys.stderr)
            if errs:
                rc = EXIT_FAIL
    return rc


def _add_controls(sub) -> None:
    p = sub.add_parser("controls", help="generate detective/preventive AWS controls for the synthetic-media estate")
    csub = p.add_subparsers(dest="controls_command", metavar="ACTION")
    csub.required = True
    g = csub.add_parser("generate", help="Config rules, Contributor Insights rule, Macie identifiers, IAM policies",
                        description="Write JSON inputs of AWS API calls (PutConfigRule, PutInsightRule, "
                                    "CreateCustomDataIdentifier, CreatePolicy) for the buckets in synthguard.toml, "
                                    "validated against botocore's service models.")
    g.add_argument("--config", required=True, metavar="TOML", help="synthguard.toml with [[posture.buckets]]")
    g.add_argument("--out", required=True, metavar="DIR", help="directory for the JSON files")
    g.add_argument("--region", default=None, help="region for region-bound conditions (default: config or us-east-1)")
    g.set_defaults(func=_cmd_controls_generate)


def _cmd_controls_generate(args) -> int:
    from s3sync.posture import controls, load_config

    check_out_path(args.out, directory=True)
    cfg = load_config(args.config)
    outputs = controls.generate(cfg, region=args.region)
    errs = controls.validate(outputs, cfg)
    if errs:
        for e in errs:
            print(f"synthguard: invalid control: {e}", file=sys.stderr)
        return EXIT_FAIL
    for path in controls.write(outputs, args.out):
        print(path)
    return EXIT_OK


# ----------------------------------------------------------------------------- main
_GROUPS: list[Callable[[Any], None]] = []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthguard",
        description="Prove where AI-generated media came from and find where it leaked.")
    parser.add_argument("--version", action="version", version=f"synthguard {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, obj in list(globals().items()):
        if name.startswith("_add_") and name != "_add_aws_options" and callable(obj):
            obj(sub)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("synthguard")
    except Exception:
        return "0+unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"synthguard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("synthguard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # user-facing errors from the rooms carry clear messages
        if os.environ.get("SYNTHGUARD_DEBUG"):
            raise
        from provenance.media import MediaError

        if isinstance(exc, (MediaError, FileNotFoundError, PermissionError, IsADirectoryError, ValueError)):
            print(f"synthguard: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if type(exc).__module__.startswith("botocore"):  # no region/credentials, endpoint down, NoSuchBucket
            from s3sync.aws import describe_error

            print(f"synthguard: error: AWS: {describe_error(exc)}", file=sys.stderr)
            return EXIT_USAGE
        print(f"synthguard: error: {type(exc).__name__}: {exc} (set SYNTHGUARD_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
