"""Draw a digit in the browser: `python -m mnist_keras.demo [--model PATH]` (also `mnist-demo`).

A local page over an exported model (SavedModel, ONNX or LiteRT), by default the newest
SavedModel under artifacts/runs. Its JSON API is TensorFlow Serving's REST API (`POST
/v1/models/<name>:predict` for either signature, `GET /v1/models/<name>`), so the page runs
unchanged against a real TensorFlow Serving (`--serving-url`); `POST /demo/preprocess` brings
a drawing or a picture to MNIST form with `predict.to_mnist`, the one implementation `predict`
uses too.

`--static OUT` writes the page as a folder any static host serves instead, the model running in
the browser (`static_site.py`).
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from mnist_keras import console
from mnist_keras.contract import (
    MODEL_NAME,
    OUTPUT_CLASSES,
    OUTPUT_PROBABILITIES,
    SIGNATURE,
    SIGNATURE_FLOAT,
)
from mnist_keras.data import IMAGE_SHAPE
from mnist_keras.errors import ConfigError, DataError, first_line
from mnist_keras.predict import add_model_flag, decode_picture, to_mnist
from mnist_keras.runs import DEFAULT_RUNS_DIR, newest_export
from mnist_keras.runtimes import Classifier, SavedModelClassifier, load_classifier, version_of
from mnist_keras.static_site import DEFAULT_RUNTIME_DIR, write_static

try:  # the server is an optional extra: pip install 'mnist-keras[demo]'
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
except ImportError:  # main() says what to install
    uvicorn = None

STATIC = Path(__file__).with_name("demo_static")
MAX_BODY = 1 << 20  # bytes; a 280x280 drawing as JSON is about 300 kB
MAX_SIDE = 2000  # pixels, for drawings sent as arrays
PROXY_TIMEOUT_S = 10
SIGNATURES = (SIGNATURE, SIGNATURE_FLOAT)  # the contract's; older SavedModels lack the float one


class ApiError(Exception):
    """A request the API refuses: its HTTP status and a message for the JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Backend:
    """Where predictions come from: a local export, or a TensorFlow Serving URL."""

    name: str
    classifier: Classifier | None = None
    serving_url: str | None = None
    version: str = "1"

    def signatures(self) -> tuple[str, ...]:
        """The signatures a request may name (TensorFlow Serving checks its own model's too)."""
        if isinstance(self.classifier, SavedModelClassifier):
            return self.classifier.signatures
        return SIGNATURES if self.serving_url else (SIGNATURE,)


def parse_request(payload: Any, backend: Backend) -> tuple[str, np.ndarray]:
    """A predict body's signature and its images, checked in TF Serving's order."""
    if not isinstance(payload, dict):
        raise ApiError(400, 'the body must be a JSON object with "instances"')
    signature = signature_name(payload, backend)
    return signature, parse_instances(payload, signature)


def signature_name(payload: dict, backend: Backend) -> str:
    """The body's `signature_name` (empty or absent: `serving_default`), if `backend` has it."""
    name = payload.get("signature_name", "")
    if not isinstance(name, str):
        raise ApiError(400, "'signature_name' key must be a string value")
    name = name or SIGNATURE
    if name not in backend.signatures():
        raise _unknown_signature(name, backend)
    return name


def _unknown_signature(name: str, backend: Backend) -> ApiError:
    if name == SIGNATURE_FLOAT and not isinstance(backend.classifier, SavedModelClassifier):
        # ONNX and LiteRT files hold serving_default alone; scaling float pixels to uint8 would
        # round them (0.5 is 127.5) and could change the answer, so they are refused.
        return ApiError(
            400,
            f'signature "{name}" needs the SavedModel: {backend.classifier.path.name} has only '
            f'"{SIGNATURE}" (integers 0..255)',
        )
    return ApiError(400, f'Serving signature name: "{name}" not found in signature def')


def parse_instances(payload: dict, signature: str = SIGNATURE) -> np.ndarray:
    """TF Serving's row format: {"instances": N x 28 x 28 pixels}, as `signature` takes them."""
    if "instances" not in payload:
        raise ApiError(400, 'the body must be a JSON object with "instances"')
    if signature == SIGNATURE_FLOAT:
        array = _unit_array(payload["instances"], "instances")
    else:
        hint = f' (floats in [0, 1] go to signature_name "{SIGNATURE_FLOAT}")'
        array = _int_array(payload["instances"], "instances", hint)
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE or len(array) == 0:
        raise ApiError(400, f"instances must have shape [N, 28, 28], got {list(array.shape)}")
    return array


def _int_array(values: Any, what: str, hint: str = "") -> np.ndarray:
    """Integers 0..255 as uint8, or ApiError naming `what` and the defect (then `hint`)."""
    array = _array(values, what)
    if array.size and array.dtype.kind not in "iu":
        raise ApiError(
            400, f"{what} must hold integers 0..255 (uint8), got {array.dtype.name}{hint}"
        )
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ApiError(400, f"{what} has values outside 0..255")
    return array.astype(np.uint8)


def _unit_array(values: Any, what: str) -> np.ndarray:
    """Numbers in [0, 1] as float32, or ApiError naming `what` and the defect."""
    array = _array(values, what)
    if array.size and array.dtype.kind not in "iuf":
        raise ApiError(400, f"{what} must hold numbers 0.0..1.0, got {array.dtype.name}")
    if array.size and not ((array >= 0) & (array <= 1)).all():  # NaN fails both
        raise ApiError(
            400,
            f'{what} has values outside 0.0..1.0: "{SIGNATURE_FLOAT}" takes pixels scaled to '
            f'[0, 1] (integers 0..255 go to "{SIGNATURE}")',
        )
    return array.astype(np.float32)


def _array(values: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(values)
    except ValueError as exc:  # ragged lists
        raise ApiError(400, f"{what} is not a rectangular array ({first_line(exc)})") from exc


def predictions(backend: Backend, signature: str, images: np.ndarray) -> list[dict[str, Any]]:
    """One {"probabilities", "classes"} object per image, as TF Serving answers."""
    if signature == SIGNATURE_FLOAT:
        probabilities = backend.classifier.from_float(images)
    else:
        probabilities = backend.classifier(images)
    return [
        {OUTPUT_PROBABILITIES: [float(p) for p in row], OUTPUT_CLASSES: int(row.argmax())}
        for row in probabilities
    ]


def preprocess_drawing(payload: Any) -> np.ndarray:
    """{"image": H x W grayscale integers} from the page's canvas, in MNIST form."""
    if not isinstance(payload, dict) or "image" not in payload:
        raise ApiError(400, 'the body must be a JSON object with "image"')
    image = _int_array(payload["image"], "image")
    if image.ndim != 2 or not (min(image.shape) > 0 and max(image.shape) <= MAX_SIDE):
        raise ApiError(400, f"image must be [H, W] with sides 1..{MAX_SIDE}, got {image.shape}")
    return to_mnist(image)


def preprocess_picture(content: bytes) -> np.ndarray:
    pixels = picture_pixels(content)
    if pixels is not None and pixels > MAX_SIDE * MAX_SIDE:
        raise ApiError(400, f"the picture has {pixels:,} pixels, more than {MAX_SIDE}x{MAX_SIDE}")
    try:
        return to_mnist(decode_picture(content, "the picture"))
    except DataError as exc:
        raise ApiError(400, str(exc)) from exc


def picture_pixels(content: bytes) -> int | None:
    """Width x height from a PNG, GIF, BMP or JPEG header, so a small file that would decode to
    gigabytes is refused before decoding; None when the header is not one of those."""
    if content[:8] == b"\x89PNG\r\n\x1a\n" and len(content) >= 24:
        width, height = struct.unpack(">II", content[16:24])
    elif content[:6] in (b"GIF87a", b"GIF89a") and len(content) >= 10:
        width, height = struct.unpack("<HH", content[6:10])
    elif content[:2] == b"BM" and len(content) >= 26:
        width, height = (abs(v) for v in struct.unpack("<ii", content[18:26]))
    elif content[:2] == b"\xff\xd8":
        try:
            height, width, _ = tf.io.extract_jpeg_shape(content).numpy()
        except tf.errors.OpError:
            return None
    else:
        return None
    return int(width) * int(height)


async def read_body(request: Request) -> bytes:
    """The request body, refusing more than MAX_BODY bytes without reading them all."""
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(400, f"body over the {MAX_BODY} byte limit")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ApiError(400, f"body over the {MAX_BODY} byte limit")
    return body


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise ApiError(400, f"malformed JSON ({first_line(exc)})") from exc


def forward(url: str, body: bytes | None) -> tuple[int, bytes]:
    """Send a request on to TensorFlow Serving; its answer, or 502 when it cannot be reached."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=PROXY_TIMEOUT_S) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        raise ApiError(502, f"TensorFlow Serving at {url} did not answer ({exc})") from exc


def create_app(backend: Backend) -> Starlette:
    """The page, the preprocessing endpoint and the TF Serving REST API over `backend`."""

    def check_name(request: Request) -> None:
        if request.path_params["name"] != backend.name:
            raise ApiError(
                404, f"Servable not found for request: Latest({request.path_params['name']})"
            )

    async def predict(request: Request) -> Response:
        check_name(request)
        body = await read_body(request)
        signature, images = parse_request(parse_json(body), backend)
        if backend.serving_url:
            url = f"{backend.serving_url}/v1/models/{backend.name}:predict"
            status, answer = await run_in_threadpool(forward, url, body)
            return Response(answer, status, media_type="application/json")
        answer = await run_in_threadpool(predictions, backend, signature, images)
        return JSONResponse({"predictions": answer})

    async def status(request: Request) -> Response:
        check_name(request)
        if backend.serving_url:
            url = f"{backend.serving_url}/v1/models/{backend.name}"
            code, answer = await run_in_threadpool(forward, url, None)
            return Response(answer, code, media_type="application/json")
        ok = {"error_code": "OK", "error_message": ""}
        state = {"version": backend.version, "state": "AVAILABLE", "status": ok}
        return JSONResponse({"model_version_status": [state]})

    async def preprocess(request: Request) -> Response:
        body = await read_body(request)
        if request.headers.get("content-type", "").startswith("image/"):
            image = await run_in_threadpool(preprocess_picture, body)
        else:
            image = await run_in_threadpool(preprocess_drawing, parse_json(body))
        return JSONResponse({"image": image.tolist()})

    async def config(request: Request) -> Response:
        return JSONResponse({"model": backend.name})

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def api_error(request: Request, exc: ApiError) -> Response:
        return JSONResponse({"error": str(exc)}, exc.status)

    routes = [
        Route("/", index),
        Route("/v1/models/{name}:predict", predict, methods=["POST"]),
        Route("/v1/models/{name}", status, methods=["GET"]),
        Route("/demo/preprocess", preprocess, methods=["POST"]),
        Route("/demo/config", config),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={ApiError: api_error})


def check_port(host: str, port: int) -> None:
    """Fail with one line, before loading anything, when the address cannot be served."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port} must be in 1..65535")
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise ConfigError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror})"
        ) from exc


def build_parser() -> console.Parser:
    p = console.Parser(prog="python -m mnist_keras.demo", description=__doc__.splitlines()[0])
    add_model_flag(p, "the newest SavedModel of any run under --runs-dir")
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=DEFAULT_RUNS_DIR,
        metavar="DIR",
        help=f"where to look for the newest export when --model is left out ({DEFAULT_RUNS_DIR})",
    )
    p.add_argument(
        "--serving-url",
        metavar="URL",
        help="answer predictions from this TensorFlow Serving (e.g. http://localhost:8501) "
        "instead of a local model",
    )
    p.add_argument(
        "--static",
        type=Path,
        metavar="OUT",
        help="write the page as a folder any static web server can publish, the model (as "
        "ONNX) running in the browser, instead of serving it; OUT must be new, empty or "
        "written by --static before",
    )
    p.add_argument(
        "--runtime-dir",
        type=Path,
        default=DEFAULT_RUNTIME_DIR,
        metavar="DIR",
        help="with --static: the installed onnxruntime-web package to copy its files from "
        f"({DEFAULT_RUNTIME_DIR}, which `make static` installs with npm ci)",
    )
    p.add_argument("--name", default=MODEL_NAME, help=f"model name in the API ({MODEL_NAME})")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (127.0.0.1: this machine only; 0.0.0.0 opens it to the network)",
    )
    p.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    return p


def backend_from_args(args: Any) -> Backend:
    if args.model is not None and args.serving_url is not None:
        raise ConfigError("give --model DIR or --serving-url URL, not both")
    if args.serving_url:
        url = urllib.parse.urlsplit(args.serving_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(f"--serving-url {args.serving_url!r}: expected http://HOST:PORT")
        return Backend(args.name, serving_url=args.serving_url.rstrip("/"))
    path = args.model if args.model is not None else newest_export(args.runs_dir)
    classifier = load_classifier(path)
    return Backend(args.name, classifier=classifier, version=version_of(classifier.path))


def serving_line(backend: Backend, args: Any) -> str:
    """What the demo answers from, so nobody wonders which model they are drawing for."""
    if backend.serving_url:
        return f"predictions from TensorFlow Serving at {backend.serving_url}"
    chosen = "" if args.model is not None else f" (the newest export under {args.runs_dir})"
    return f"model: {backend.classifier.path}{chosen}"


def write_static_page(args: Any) -> int:
    if args.serving_url is not None:
        raise ConfigError(
            "--static puts the model in the folder: give --model PATH, not --serving-url"
        )
    path = args.model if args.model is not None else newest_export(args.runs_dir)
    with console.status(f"writing the static page for {path}"):
        site = write_static(args.static, path, args.runtime_dir)
    console.print_static_site(site)
    return 0


@console.cli()
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.static is not None:
        return write_static_page(args)
    if uvicorn is None:
        raise ConfigError("the demo needs its extra: pip install 'mnist-keras[demo]'")
    check_port(args.host, args.port)
    backend = backend_from_args(args)
    console.print_line(serving_line(backend, args))
    console.print_line(f"mnist demo on http://{args.host}:{args.port}/  (Ctrl-C stops it)")
    uvicorn.run(create_app(backend), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
