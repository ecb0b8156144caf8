"""The image family's served object: images decoded and resized in the server, the network in ONNX Runtime.

A request's records carry ``{"image": "<base64 of the file>"}``. :class:`ImageRequestValidator` checks
the JSON as every family's validator does, then decodes each image (off the event loop: the app runs a
validator that says ``blocking``  in a worker thread) with the limits of ``serve:`` and the family:

* more than ``MAX_PIXELS`` pixels declared by the header (a decompression bomb): 413, before decoding;
* not base64, not an image, truncated: 422 naming ``records[i].image``.

The records it returns keep, for the prediction log and drift monitoring, the image's digest and its
statistics (``width``, ``height``, ``aspect``, ``brightness``, ``contrast``, the columns the training
rows hold) instead of the base64 text; the pixels travel beside them (``ImageRecord.pixels``) to the
scorer, which runs the int8 graph ``modelloop optimize`` registered, else the fp32 one, else PyTorch.
The served runtime's validator also keeps each image's bytes by digest (``served.py``): feedback on a
served image becomes a training row at the next ``modelloop retrain``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...data.images import IMAGE_COLUMN, MAX_PIXELS, BadImage, ImageTooLarge, decode_base64, decode_image, \
    image_stats, resize
from ...serving.runtime import Runtime, native_model, table_columns
from ...serving.validation import ValidationProblem
from .served import ServedImages, digest_of, served_images

__all__ = ["ImageRecord", "ImageRequestValidator", "decode_upload", "image_runtime", "multipart_files"]

log = logging.getLogger("modelloop.serving")


class ImageRecord(dict):
    """A validated record: JSON-ready items (digest and statistics) plus the decoded pixels."""

    pixels: np.ndarray


class ImageRequestValidator:
    """The request validator of an image model: the generic one, then each image decoded and checked."""

    blocking = True  # decoding is CPU work: the app calls ``validate_json`` in a worker thread

    def __init__(self, base: Any, image_size: int, max_pixels: int = MAX_PIXELS, keep: ServedImages | None = None):
        self.base, self.image_size, self.max_pixels = base, image_size, max_pixels
        self.keep = keep  # where each decoded image's bytes are kept for retraining (``served.py``); None: not

    def __getattr__(self, name: str) -> Any:  # features, allowed, json_schema, ...: the generic validator's
        return getattr(self.base, name)

    def validate_json(self, body: bytes) -> list[dict[str, Any]]:
        records = self.base.validate_json(body)
        out: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for i, rec in enumerate(records):
            try:
                out.append(self.record(decode_base64(str(rec[IMAGE_COLUMN]))))
            except ImageTooLarge as exc:
                raise _too_large(f"records[{i}].image", exc) from None
            except BadImage as exc:
                errors.append({"loc": ["records", i, IMAGE_COLUMN], "field": IMAGE_COLUMN, "type": "image_invalid",
                               "msg": f"records[{i}].image: {exc}"})
        if errors:
            raise ValidationProblem(errors)
        return out

    def upload(self, content_type: str, body: bytes, max_files: int) -> list[dict[str, Any]]:
        """Records of a ``multipart/form-data`` body: every file part, in order (``/v1/predict/image``)."""
        from starlette.exceptions import HTTPException

        files = multipart_files(content_type, body)
        if not files:
            raise HTTPException(422, "no file in the request; send one or more image files as multipart/form-data "
                                     "(curl -F file=@part.jpg)")
        if len(files) > max_files:
            raise HTTPException(413, f"{len(files)} files is more than serve.max_records ({max_files}); "
                                     "split the request")
        return decode_upload(self, files)

    def record(self, raw: bytes) -> ImageRecord:
        """The validated record of one encoded image (raises ``BadImage`` / ``ImageTooLarge``)."""
        img = decode_image(raw, max_pixels=self.max_pixels)
        digest = digest_of(raw)
        rec = ImageRecord({IMAGE_COLUMN: digest, **image_stats(img)})
        rec.pixels = resize(img, self.image_size)
        if self.keep is not None:
            self.keep.keep(raw, digest)
        return rec


def _too_large(where: str, exc: Exception) -> Exception:
    from starlette.exceptions import HTTPException

    return HTTPException(413, f"{where}: {exc}; send a smaller image")


def multipart_files(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """``(filename, bytes)`` of each file part of a ``multipart/form-data`` body (the standard library's
    MIME parser: no multipart package is needed). 415 when the body is not multipart."""
    from email.parser import BytesParser
    from email.policy import HTTP

    from starlette.exceptions import HTTPException

    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        raise HTTPException(415, f"content-type must be multipart/form-data with a boundary, got "
                                 f"'{content_type or 'none'}'; send files with curl -F file=@part.jpg")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") +
                                                  b"\r\n\r\n" + body)
    files = []
    for i, part in enumerate(message.iter_parts()):  # type: ignore[attr-defined]
        name = part.get_filename() or part.get_param("name", header="content-disposition") or f"part {i}"
        payload = part.get_payload(decode=True)
        payload = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None or part.get_content_type() != "text/plain":
            files.append((str(name), payload))
    return files


def decode_upload(validator: ImageRequestValidator, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Records of uploaded files (``(filename, bytes)``): 413 for a bomb, 415 naming a non-image file."""
    from starlette.exceptions import HTTPException

    out: list[dict[str, Any]] = []
    for name, raw in files:
        try:
            out.append(validator.record(raw))
        except ImageTooLarge as exc:
            raise _too_large(f"file '{name}'", exc) from None
        except BadImage as exc:
            raise HTTPException(415, f"file '{name}': {exc}; send JPEG, PNG, GIF, WebP, BMP or TIFF") from None
    return out


def image_runtime(ws: Any, row: dict[str, Any], plan: dict[str, Any] | None, threads: int) -> Runtime:
    """The served object of an image model version."""
    native = native_model(ws, row)
    formats = row.get("formats") or {}
    session, variant = None, "native"
    reason = "image model without an ONNX variant (run `modelloop optimize`); serving PyTorch"
    for key in ("onnx_int8", "onnx"):
        if formats.get(key):
            try:
                from .export import image_session

                session = image_session(formats[key], threads=threads)
            except Exception as exc:
                log.warning("model %s:%s: %s session failed: %s", row["name"], row["version"], key, exc)
                continue
            variant, reason = key, f"image model served through ONNX Runtime ({key}, {threads} threads)"
            break

    def score(records: list[dict[str, Any]]) -> tuple[np.ndarray, None]:
        pixels = np.stack([_pixels_of(native, r) for r in records]) if records else \
            np.zeros((0, native.image_size_, native.image_size_, 3), dtype=np.uint8)
        if session is not None:  # ONNX Runtime's answer for an image does not depend on its batch
            return native.scores_of_pixels(pixels, session=session), None
        # PyTorch's does, in the last digits (~3e-6 at one thread): the fallback scores each image alone,
        # so an answer never depends on the requests it was batched with
        return np.concatenate([native.scores_of_pixels(pixels[i:i + 1]) for i in range(len(pixels))]
                              or [np.zeros((0, len(native.classes_)))]), None

    extra = {"image": {"column": IMAGE_COLUMN, "image_size": int(native.image_size_),
                       "method": (native.config or {}).get("method"), "backbone": (native.config or {}).get("backbone"),
                       "max_pixels": MAX_PIXELS, "upload": "/v1/predict/image"}}
    rt = Runtime(row, native=native, plan=plan, table=table_columns(ws, row), reason=reason, scorer=score,
                 variant=variant, extra=extra)
    rt.validator = ImageRequestValidator(rt.validator, int(native.image_size_),  # type: ignore[assignment]
                                         keep=served_images(ws, row))
    return rt


def _pixels_of(native: Any, record: dict[str, Any]) -> np.ndarray:
    pixels = getattr(record, "pixels", None)
    return pixels if pixels is not None else native.pixels_of(record[IMAGE_COLUMN])
