"""The demo without a server: a folder any static host serves, the model running in the browser.

`python -m mnist_keras.demo --static OUT [--model PATH]` writes it (also `make static`):

    OUT/index.html          the served demo's page, its app.js tag naming the model
    OUT/model.onnx          the export, converted from the SavedModel when needed
    OUT/static/             the page's app.js, mnist.js (predict.to_mnist in JavaScript) and
                            style.css; ONNX Runtime Web's script and WebAssembly files
    OUT/mnist-static.json   what went into it; it also marks the folder as one this wrote

The runtime comes from npm (`web/package.json`, pinned by its lockfile; `make static` runs
`npm ci`); nothing in the folder is loaded from the network. ONNX Runtime Web rather than
LiteRT.js: see docs/serving.md, "The static page".
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mnist_keras.contract import INPUT_NAME, OUTPUT_PROBABILITIES
from mnist_keras.errors import ConfigError, ModelError, RunError, first_line
from mnist_keras.formats import ONNX, check_formats, signature_to_onnx
from mnist_keras.runs import current_umask, write_bytes
from mnist_keras.runtimes import SavedModelClassifier, load_classifier

PAGE = Path(__file__).with_name("demo_static")  # the served demo's page, scripts and style
PAGE_FILES = ("app.js", "mnist.js", "style.css")
RUNTIME = "onnxruntime-web"
DEFAULT_RUNTIME_DIR = Path("web") / "node_modules" / RUNTIME  # npm ci --prefix web
# The WebAssembly build alone (no WebGL or WebGPU): its classic script, the module it loads and
# the binary. A static host gives no cross-origin isolation, so the page runs it on one thread.
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODEL_FILE = "model.onnx"
MANIFEST = "mnist-static.json"
APP_TAG = '<script src="static/app.js"></script>'


@dataclass(frozen=True)
class StaticSite:
    """A written folder: where, from which export, and the bytes of each file in it."""

    path: Path
    model: Path
    runtime: str  # e.g. onnxruntime-web 1.30.0
    files: dict[str, int]

    @property
    def size(self) -> int:
        return sum(self.files.values())

    @property
    def model_size(self) -> int:
        return self.files[MODEL_FILE]

    @property
    def runtime_size(self) -> int:
        return sum(self.files[f"static/{name}"] for name in RUNTIME_FILES)


def write_static(out: Path, model: Path, runtime_dir: Path = DEFAULT_RUNTIME_DIR) -> StaticSite:
    """Write the static page for `model` (a SavedModel or an .onnx export) to `out`, whole or not
    at all; `out` may be new, empty, or a folder this wrote before, which it replaces."""
    check_target(out)
    runtime = runtime_version(runtime_dir)
    source, onnx = onnx_export(model)
    files = {
        "index.html": page_html().encode(),
        MODEL_FILE: onnx,
        **{f"static/{name}": (PAGE / name).read_bytes() for name in PAGE_FILES},
        **{f"static/{name}": (runtime_dir / "dist" / name).read_bytes() for name in RUNTIME_FILES},
    }
    manifest = {
        "model": str(source),
        "runtime": runtime,
        "files": {name: _fingerprint(content) for name, content in files.items()},
    }
    files[MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode()
    replace_folder(out, files)
    return StaticSite(out, source, runtime, {n: len(c) for n, c in files.items() if n != MANIFEST})


def _fingerprint(content: bytes) -> dict[str, int | str]:
    return {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}


def check_target(out: Path) -> None:
    """Refuse a file, the current folder or one above it, or a folder holding anything this
    module did not write there as it wrote it: a folder someone added to or edited is theirs."""
    existing = next(path for path in (out, *out.parents) if path.exists())
    if not existing.is_dir():
        raise ConfigError(f"--static {out}: {existing} is a file, not a folder")
    if Path(os.path.abspath(out)) in (Path.cwd(), *Path.cwd().parents):
        raise ConfigError(f"--static {out}: the current folder or one above it; name a new one")
    if not out.is_dir():
        return
    foreign = sorted(_entries(out) - _ours(out))
    if foreign:
        raise ConfigError(
            f"--static {out}: the folder holds what this did not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); name a new or empty folder"
        )


def _entries(out: Path) -> set[str]:
    """Every file, folder and link under `out`, relative to it (links are not followed)."""

    def unreadable(error: OSError) -> None:
        raise ConfigError(f"--static {out}: cannot read {error.filename} ({error.strerror})")

    found = set()
    for root, folders, files in os.walk(out, onerror=unreadable):
        found.update(os.path.relpath(os.path.join(root, n), out) for n in folders + files)
    return found


def _ours(out: Path) -> set[str]:
    """What under `out` is as this module wrote it: the files its manifest lists with their
    content unchanged, their folders, and the manifest."""
    try:
        listed = json.loads((out / MANIFEST).read_text())["files"]
        unchanged = {
            name
            for name, fingerprint in listed.items()
            if not (out / name).is_symlink()
            and (out / name).is_file()
            and _fingerprint((out / name).read_bytes()) == fingerprint
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
    folders = {str(parent) for name in unchanged for parent in Path(name).parents}
    return unchanged | (folders - {"."}) | {MANIFEST}


def runtime_version(runtime_dir: Path) -> str:
    """`onnxruntime-web <version>` from its package.json, once its files are all there."""
    missing = [name for name in RUNTIME_FILES if not (runtime_dir / "dist" / name).is_file()]
    try:
        version = json.loads((runtime_dir / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        missing.append("package.json")
    if missing:
        raise ConfigError(
            f"--runtime-dir {runtime_dir}: {RUNTIME} is not installed there (no "
            f"{', '.join(missing)}): run `make static`, or `npm ci --prefix web`"
        )
    return f"{RUNTIME} {version}"


def onnx_export(model: Path) -> tuple[Path, bytes]:
    """The export the page will run, as ONNX: an .onnx file checked in ONNX Runtime, or a
    SavedModel (or its model folder's newest version) converted; with the path it came from."""
    if model.suffix == ".tflite":
        raise ModelError(
            f"--model {model}: the static page runs ONNX in the browser (ONNX Runtime Web); "
            "give the SavedModel or an .onnx export"
        )
    if model.suffix == ".onnx":
        return model, load_classifier(model).path.read_bytes()
    classifier = SavedModelClassifier(model)
    check_formats((ONNX,), "--static")
    try:
        return classifier.path, signature_to_onnx(classifier.serving)
    except Exception as exc:  # tf2onnx raises its own types, and sometimes bare ones
        raise ModelError(
            f"--model {classifier.path}: converting to ONNX failed ({first_line(exc)})"
        ) from exc


def page_html() -> str:
    """The served page, its script tag naming the model and loading the runtime first."""
    html = (PAGE / "index.html").read_text()
    if html.count(APP_TAG) != 1:
        raise RuntimeError(f"demo_static/index.html must hold {APP_TAG} once")
    tags = (
        '<script src="static/ort.wasm.min.js"></script>\n'
        '  <script src="static/mnist.js"></script>\n'
        f'  <script src="static/app.js" data-model="{MODEL_FILE}" data-input="{INPUT_NAME}" '
        f'data-output="{OUTPUT_PROBABILITIES}"></script>'
    )
    return html.replace(APP_TAG, tags)


def replace_folder(out: Path, files: dict[str, bytes]) -> None:
    """Write `files` (relative path: content) as the folder `out`: into a hidden folder beside
    it, then renamed into place, so `out` is never half-written. A folder already there is
    moved aside first and removed once the new one is in place, or moved back."""
    old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
    tmp = None
    placed = moved = False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
        for name, content in files.items():
            write_bytes(tmp / name, content)  # each file flushed to disk before the rename
        mode = os.stat(out).st_mode if out.is_dir() else 0o777 & ~current_umask()
        os.chmod(tmp, stat.S_IMODE(mode))  # the folder's mode, not mkdtemp's 0700
        check_target(out)  # again: the conversion took seconds, and the folder may have changed
        if out.exists():
            os.rename(out, old)
            moved = True
        os.rename(tmp, out)
        placed = True
    except OSError as exc:
        raise RunError(f"--static {out}: writing the folder failed ({first_line(exc)})") from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if placed:
            shutil.rmtree(old, ignore_errors=True)
        elif moved:
            _move_back(old, out)


def _move_back(old: Path, out: Path) -> None:
    try:
        os.rename(old, out)
    except OSError as exc:
        raise RunError(
            f"--static {out}: writing the folder failed, and the folder that was there is now "
            f"{old} ({first_line(exc)})"
        ) from exc
