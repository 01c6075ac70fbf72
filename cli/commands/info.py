"""lcf info: header fields and chunk table of an .lcf file and the model it needs; the decoders a weights folder
offers; the installed models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lcf import api
from lcf.models import Lookup, installed_models, lookup
from lcf_cli.common import (
    Json,
    MaxPixels,
    Weights,
    error_dict,
    fail,
    limits,
    out_console,
    print_json,
    report_errors,
)


@report_errors
def info(
    file: Annotated[
        Path | None, typer.Argument(metavar="[FILE]", help="The .lcf file to describe.", show_default=False)
    ] = None,
    json: Json = False,
    max_pixels: MaxPixels = api.DEFAULT_MAX_PIXELS,
    weights: Weights = None,
) -> None:
    """Show the header and the chunks of an .lcf file (without decoding it), or the decoders of a weights folder.

    The chunk table lists each chunk's type, offset, payload length and whether its CRC matches. A damaged file
    is listed as far as it can be, then the problem is reported and the exit code says what it is. The "needs"
    line names the model the file was encoded with and the installed weights folder that decodes it (packaged,
    released or from LCF_WEIGHTS_PATH; --weights or LCF_WEIGHTS force one), or, when none does, where to get it.
    Without FILE, with --weights, or with a weights folder as FILE, it lists the decoders (synthesis networks) the
    weights offer: any of them decodes any file of the same model (lcf decode --decoder NAME); without FILE and
    --weights, also the installed models.

    [bold]Examples[/]
      lcf info photo.lcf
      lcf info photo.lcf --json | jq .header.width
      lcf info --weights weights/
    """
    if file is not None and weights is None and file.is_dir():
        file, weights = None, file  # `lcf info weights/`: a weights folder given as FILE
    if file is None:
        folder = _decoders(weights)
        models = _models() if weights is None else None
        if json:
            print_json({**folder, **({"models": models} if models is not None else {})})
        else:
            _print_decoders(folder)
            if models is not None:
                _print_models(models)
        return
    listing = _decoders(weights) if weights is not None else None
    result = api.inspect_file(file, limits(max_pixels))
    model = lookup(result.header.model_id, weights)
    if json:
        print_json(
            {
                "file": str(result.path),
                "size": result.size,
                "header": result.header.as_dict(),
                "chunks": [
                    {"type": c.type, "offset": c.offset, "length": c.length, "crc_ok": c.crc_ok} for c in result.chunks
                ],
                "valid": result.error is None,
                "error": None if result.error is None else error_dict(result.error),
                "model": model.to_json(),
                **({"weights": listing} if listing is not None else {}),
            }
        )
    else:
        _print_table(result, model)
        if listing is not None:
            _print_decoders(listing)
    if result.error is not None:
        fail(result.error)


def _print_table(result: api.FileInfo, model: Lookup) -> None:
    h = result.header
    if model.problem is None:
        needs = f"model {h.model_id.hex()}, installed: {model.root} ({model.source})"
    else:
        needs = f"model {h.model_id.hex()}: {model.problem}"
    fields = [
        ("file", f"{result.path} ({result.size} bytes)"),
        ("size", f"{h.width} x {h.height}, {h.color.name}"),
        ("quality", f"{h.quality:g}"),
        ("decoder", h.decoder),
        ("model id", h.model_id.hex()),
        ("needs", needs),
        ("latent", f"M = {h.latent_channels}, Mz = {h.hyper_channels}, padded {h.padded_width} x {h.padded_height}"),
    ]
    for name, value in fields:
        out_console.print(f"{name:<9} {value}", markup=False)
    table = Table("type", "offset", "length", "crc ok", box=None, pad_edge=False)
    for c in result.chunks:
        table.add_row(c.type, str(c.offset), str(c.length), "yes" if c.crc_ok else "[red]NO[/]")
    out_console.print(table)


def _decoders(weights: Path | None) -> dict:
    from lcf.errors import LcfIOError
    from lcf.weights import load_weights  # reads manifest.json, the entropy model and the encoder; no torch

    w = load_weights(weights)
    try:
        encoder_id = w.encoder_id().hex()
    except LcfIOError:  # a decode-only folder: encoder.safetensors is needed to encode only
        encoder_id = None
    return {
        "weights": str(w.root),
        "model_id": w.model_id.hex(),
        "encoder_id": encoder_id,
        "default_decoder": w.default_decoder,
        "decoders": [{"name": name, **w.decoder_info(name).to_json()} for name in w.decoder_names],
    }


def _models() -> list[dict]:
    return [m.to_json() for m in installed_models().models]


def _print_models(models: list[dict]) -> None:
    table = Table("installed model", "source", "decoders", "encodes", "weights", box=None, pad_edge=False)
    for m in models:
        table.add_row(
            m["model_id"], m["source"], ", ".join(m["decoders"]), "yes" if m["encodes"] else "no", m["weights"]
        )
    out_console.print(table)


def _print_decoders(listing: dict) -> None:
    encoder = f"encoder id {listing['encoder_id']}" if listing["encoder_id"] else "no encoder: decoding only"
    out_console.print(f"weights   {listing['weights']} (model id {listing['model_id']}, {encoder})", markup=False)
    table = Table("decoder", "kind", "N", "attention", "residual", "parameters", "bytes", box=None, pad_edge=False)
    for d in listing["decoders"]:
        arch = d.get("arch", {})
        name = d["name"] + (" (default)" if d["name"] == listing["default_decoder"] else "")
        table.add_row(
            name,
            str(arch.get("kind", "?")),
            str(arch.get("N", "?")),
            "yes" if arch.get("attention", True) else "no",
            "yes" if arch.get("residual", True) else "no",
            f"{d.get('parameters', 0):,}",
            f"{d.get('bytes', 0):,}",
        )
    out_console.print(table)
