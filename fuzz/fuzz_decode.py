#!/usr/bin/env python
"""Coverage-guided fuzzing of lcf's whole decode path with atheris (libFuzzer for Python).

    python fuzz/fuzz_decode.py -atheris_runs=20000            # a fixed number of inputs
    python fuzz/fuzz_decode.py -max_total_time=900            # 15 minutes
    python fuzz/fuzz_decode.py corpus/ -max_total_time=900    # keep the corpus in corpus/ (the seeds are added)
    python fuzz/fuzz_decode.py crash-1234abcd                 # replay one input (what libFuzzer saved)
    python fuzz/fuzz_decode.py --symbols -max_total_time=600  # the second target (below)

Set-up, all in code: a tiny random-initialised model (N=4, M=8, Mz=4; decoding one file takes milliseconds) is
exported to a temporary weights folder, and seed files are encoded with it: several sizes (1x1, thin, odd, two hyper
positions), every quality level, gray, alpha, ICC/EXIF/XMP, and files made from hand-written symbols whose z and y
values escape the coding windows up to +-2^30 (so that the networks see huge inputs).

Each input runs through ``Codec.decode(data, limits=LIMITS)``, ``Decoded.to_pil()`` and ``lcf.image.save_image`` to
PNG: container reader, model check, hyper/anchor/non-anchor streams, the float64 entropy networks, the integer
tables, synthesis, alpha and metadata, and writing them out. Before that, every chunk's CRC is recomputed (as the
custom mutator does after mutating one chunk's payload, or the whole file), so that the damage reaches the codec
instead of stopping at the CRC check.

Second target (``--symbols``): the input is read as an image size, a quality, a decoder name and sparse z and y
values (any int32, most of them small), which the codec's own encoder turns into a valid file. Random bytes almost
never pass a stream's 24-bit end check, so this is how extreme symbols reach the deeper stages: the file must decode,
and to exactly the symbols it was made from.

A finding (libFuzzer saves the input as crash-*) is: an exception that is not an LcfError; an LcfError that the
codec's last-resort wrapper made out of a torch/numpy/constriction exception (message starts with
lcf.codec.UNEXPECTED: the cause must be fixed where it arises); a decoded image whose shape does not match its header;
an input running over -timeout (default here 60 s) or memory over -rss_limit_mb (default here 3072).

The same checks run in the test suite on a few hundred hypothesis-generated mutants (tests/test_fuzz_decode.py).
"""

from __future__ import annotations

import random
import sys
import tempfile
import zlib
from pathlib import Path

SIGNATURE_AND_VERSION = 10  # 8-byte signature + 2-byte version
FUZZ_CONFIG = {"N": 4, "M": 8, "Mz": 4}
LIMITS_KW = {"max_pixels": 256 * 256, "max_chunk_length": 64 * 1024, "max_file_size": 256 * 1024}
ESCAPES = (-(2**30), -(2**20), -300, 300, 70_000, 2**20, 2**30 - 1)


# -- the model and the seeds -------------------------------------------------------------------------------------


def build_weights(folder: Path, seed: int = 1234) -> Path:
    """Export a tiny random-initialised model to ``folder``; gains spread so that some channels are coded."""
    import torch

    from lcf.nn import LcfModel, ModelConfig
    from lcf.train.export import export_model

    torch.manual_seed(seed)
    model = LcfModel(ModelConfig(**FUZZ_CONFIG)).eval()
    with torch.no_grad():
        spread = torch.linspace(-2.0, 2.0, model.config.M)
        model.gain.log_gain.mul_(3.0).add_(spread)
        model.gain.log_inv_gain.mul_(3.0).sub_(spread)
    export_model(model, folder)
    return folder


def limits():
    from lcf.container import Limits

    return Limits(**LIMITS_KW)


def seed_files(codec) -> list[bytes]:
    """Valid files of every kind the decoder handles, encoded with ``codec``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)

    def picture(w: int, h: int, mode: str = "RGB") -> Image.Image:
        base = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
        return base

    seeds = []
    for (w, h), q in (
        ((64, 64), 1.0),
        ((64, 64), 4.0),
        ((64, 64), 7.0),
        ((17, 13), 5.5),
        ((1, 1), 3.0),
        ((1, 70), 6.0),
        ((130, 20), 7.0),
        ((100, 70), 2.5),
    ):
        seeds.append(codec.encode(picture(w, h), q))
    seeds.append(codec.encode(picture(30, 20, "L"), 6.0))
    seeds.append(codec.encode(picture(20, 30, "RGBA"), 5.0))
    seeds.append(codec.encode(picture(25, 25, "LA"), 7.0))
    meta, exif = picture(16, 16), Image.Exif()
    exif[0x010F] = "lcf fuzz"
    meta.info.update(icc_profile=b"\0" * 128, exif=exif.tobytes(), xmp=b"<x:xmpmeta/>")
    seeds.append(codec.encode(meta, 4.0))
    seeds.extend(escape_files(codec))
    return seeds


def escape_files(codec) -> list[bytes]:
    """Files coded from hand-written symbols: z and y values far outside the coding windows (escapes, +-2^30)."""
    import numpy as np

    from lcf.codec import Symbols
    from lcf.container import Chunk, Header, encode_channel_bitmap, write_container

    m, mz = codec.config.M, codec.config.Mz
    out = []
    for k, (w, h) in enumerate(((64, 64), (64, 128), (20, 20))):
        z = np.zeros((mz, -(-h // 64), -(-w // 64)), np.int32)
        y = np.zeros((m, -(-h // 64) * 4, -(-w // 64) * 4), np.int32)
        z.flat[k % z.size] = ESCAPES[k]
        z.flat[-1] = ESCAPES[-1 - k]
        y[k % m, 0, 0] = ESCAPES[k + 2]  # an anchor
        y[(k + 3) % m, 0, 1] = ESCAPES[-2 - k]  # a non-anchor
        y[(k + 5) % m, 1, 1] = 3
        coded = (y != 0).reshape(m, -1).any(axis=1)
        symbols = Symbols(z_hat=z, y_hat=y, coded=coded)
        hyper, anchor, nonanchor, _ = codec.code_symbols(symbols)
        header = Header(
            width=w,
            height=h,
            color=k % 2,
            model_id=codec.weights.model_id,
            quality=1.0 + k,
            decoder="teacher",
            latent_channels=m,
            hyper_channels=mz,
        )
        out.append(
            write_container(
                header,
                [
                    Chunk("CMAP", encode_channel_bitmap(coded)),
                    Chunk("HYPR", hyper),
                    Chunk("ANCH", anchor),
                    Chunk("NANC", nonanchor),
                ],
            )
        )
    return out


# -- mutation helpers --------------------------------------------------------------------------------------------


def fix_crcs(data: bytes | bytearray) -> bytes:
    """Recompute the CRC of every chunk that can still be framed, so the mutation is judged on its content."""
    out = bytearray(data)
    pos = SIGNATURE_AND_VERSION
    while pos + 12 <= len(out):
        length = int.from_bytes(out[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(out):
            break
        out[end - 4 : end] = zlib.crc32(out[pos + 4 : end - 4]).to_bytes(4, "big")
        pos = end
    return bytes(out)


def split_chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """(type, payload) of each chunk, or None when the framing is broken."""
    chunks, pos = [], SIGNATURE_AND_VERSION
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            return None
        chunks.append((bytes(data[pos + 4 : pos + 8]), bytes(data[pos + 8 : end - 4])))
        pos = end
    return chunks if pos == len(data) and chunks else None


def join_chunks(preamble: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(len(p).to_bytes(4, "big") + t + p + zlib.crc32(t + p).to_bytes(4, "big") for t, p in chunks)
    return preamble[:SIGNATURE_AND_VERSION] + body


def mutate_chunk(data: bytes, mutate_payload, rng: random.Random) -> bytes:
    """Mutate one chunk's payload with ``mutate_payload(payload) -> bytes``, keeping the framing and CRCs valid."""
    chunks = split_chunks(data)
    if not chunks:
        return fix_crcs(mutate_payload(data))
    weights = [
        4 if t in (b"HYPR", b"ANCH", b"NANC") else 2 if t in (b"HEAD", b"CMAP", b"ALPH") else 1 for t, _ in chunks
    ]
    k = rng.choices(range(len(chunks)), weights)[0]
    kind, payload = chunks[k]
    chunks[k] = (kind, mutate_payload(payload))
    return join_chunks(data, chunks)


# -- the check ---------------------------------------------------------------------------------------------------


class Finding(AssertionError):
    """Something the decoder must never do."""


def check_one(codec, data: bytes, lim=None) -> str:
    """Decode ``data`` the whole way; return "ok" or the LcfError's class name; raise Finding on a bug."""
    result = decode_checked(codec, data, lim)
    return result if isinstance(result, str) else "ok"


def decode_checked(codec, data: bytes, lim=None):
    """The Decoded image of ``data``, or the name of the LcfError it raised; raise Finding on a bug."""
    from lcf.codec import UNEXPECTED
    from lcf.errors import LcfError

    try:
        decoded = codec.decode(data, None, lim or limits())
        image = decoded.to_pil()
    except LcfError as exc:
        if UNEXPECTED in exc.message:
            raise Finding(f"the codec's last-resort wrapper fired: {exc}") from exc.__cause__
        return type(exc).__name__
    except Exception as exc:
        raise Finding(f"{type(exc).__name__} escaped the decoder: {exc}") from exc
    h = decoded.header
    if decoded.rgb.shape != (h.height, h.width, 3) or image.size != (h.width, h.height):
        raise Finding(f"decoded {decoded.rgb.shape} / {image.size} for a {h.width}x{h.height} header")
    if decoded.alpha is not None and decoded.alpha.shape != (h.height, h.width):
        raise Finding(f"alpha plane {decoded.alpha.shape} for a {h.width}x{h.height} header")
    _save_png(image)
    return decoded


_png_dir: list[Path] = []


def _save_png(image) -> None:
    """The last step of ``lcf decode``/``lcf batch``: a decoded image (with whatever ICC/EXIF/XMP the file carried)
    must be writable as PNG."""
    from lcf.image import save_image

    if not _png_dir:
        _png_dir.append(Path(tempfile.mkdtemp(prefix="lcf-fuzz-png-")))
    try:
        save_image(image, _png_dir[0] / "out.png")
    except Exception as exc:
        raise Finding(f"a decoded image cannot be saved as PNG: {type(exc).__name__}: {exc}") from exc


# -- second target: symbols -> valid file -> decode --------------------------------------------------------------


class ByteReader:
    """Integers from a byte string, for inputs that are read as a structure (short inputs read as zeros)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = bytes(data), 0

    def int(self, lo: int, hi: int) -> int:
        span = hi - lo + 1
        size = max(1, (span.bit_length() + 7) // 8)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return lo + int.from_bytes(chunk.ljust(size, b"\0"), "little") % span

    def value(self) -> int:
        """An int32 with a random magnitude class (so that small and huge values are both common)."""
        k = self.int(0, 31)
        v = min((1 << k) - 1 + self.int(0, (1 << k) - 1), 2**31 - 1) if k else self.int(0, 1)
        return -v - self.int(0, 1) if self.int(0, 1) else v


def symbols_file(codec, data: bytes):
    """(Symbols, the file coded from them) read from ``data``, or (Symbols, None) if the encoder refuses them."""
    import numpy as np

    from lcf.codec import Symbols
    from lcf.container import Chunk, Header, encode_channel_bitmap, write_container
    from lcf.errors import LcfError

    r = ByteReader(data)
    m, mz = codec.config.M, codec.config.Mz
    w, h = 1 + r.int(0, 99), 1 + r.int(0, 99)
    hz, wz = -(-h // 64), -(-w // 64)
    z = np.zeros((mz, hz, wz), np.int32)
    y = np.zeros((m, 4 * hz, 4 * wz), np.int32)
    for _ in range(r.int(0, 8)):
        z.flat[r.int(0, z.size - 1)] = r.value()
    for _ in range(r.int(0, 24)):
        y.flat[r.int(0, y.size - 1)] = r.value()
    extra = np.array([bool(r.int(0, 3) == 0) for _ in range(m)])  # coded channels that hold only zeros
    coded = (y != 0).reshape(m, -1).any(axis=1) | extra
    symbols = Symbols(z_hat=z, y_hat=y, coded=coded)
    header = Header(
        width=w,
        height=h,
        color=r.int(0, 1),
        model_id=codec.weights.model_id,
        quality=r.int(256, 1792) / 256,
        decoder=("teacher", "nosuch", "x.y-1")[r.int(0, 2)],
        latent_channels=m,
        hyper_channels=mz,
    )
    try:
        hyper, anchor, nonanchor, _ = codec.code_symbols(symbols)
    except LcfError:  # the encoder's own guard: these z drive the entropy networks out of range
        return symbols, None
    chunks = [
        Chunk("CMAP", encode_channel_bitmap(coded)),
        Chunk("HYPR", hyper),
        Chunk("ANCH", anchor),
        Chunk("NANC", nonanchor),
    ]
    return symbols, write_container(header, chunks)


def check_symbols(codec, data: bytes, lim=None) -> str:
    """Code the symbols read from ``data`` and decode the file: it must decode, to exactly those symbols."""
    import numpy as np

    sent, blob = symbols_file(codec, data)
    if blob is None:
        return "refused"
    decoded = decode_checked(codec, blob, lim)
    if isinstance(decoded, str):
        raise Finding(f"a valid file made from symbols does not decode: {decoded}")
    got = decoded.symbols
    for name in ("z_hat", "y_hat", "coded"):
        if not np.array_equal(getattr(got, name), getattr(sent, name)):
            raise Finding(f"{name} did not survive the round trip")
    return "ok"


# -- atheris -----------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["lcf"]):
        import lcf.codec
        import lcf.container
        import lcf.entropy
        import lcf.image  # noqa: F401
    import torch

    from lcf.codec import Codec

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="lcf-fuzz-"))
    codec = Codec(build_weights(work / "weights"))
    lim = limits()
    symbols_mode = "--symbols" in argv
    args = [a for a in argv[1:] if a.startswith("-") and a != "--symbols"]
    paths = [a for a in argv[1:] if not a.startswith("-")]
    if not paths or Path(paths[0]).is_dir():
        corpus = Path(paths[0]) if paths else work / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        if symbols_mode:  # random structures of every size: libFuzzer would otherwise start from tiny inputs
            rng = random.Random(1)
            seeds = [rng.randbytes(rng.randrange(8, 200)) for _ in range(32)]
        else:
            seeds = seed_files(codec)
        for i, seed in enumerate(seeds):
            (corpus / f"seed-{i:02d}{'.bin' if symbols_mode else '.lcf'}").write_bytes(seed)
        paths = [str(corpus), *paths[1:]]
        print(f"lcf fuzz: weights and {len(seeds)} seeds in {work}", file=sys.stderr)
    defaults = {"-timeout=": "60", "-rss_limit_mb=": "3072", "-max_len=": "512" if symbols_mode else "8192"}
    args += [k + v for k, v in defaults.items() if not any(a.startswith(k) for a in args)]
    if symbols_mode:
        atheris.Setup([argv[0], *args, *paths], lambda data: check_symbols(codec, data, lim))
        atheris.Fuzz()
        return

    def test_one_input(data: bytes) -> None:
        check_one(codec, fix_crcs(data), lim)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.2:
            return atheris.Mutate(data, max_size)
        out = mutate_chunk(data, lambda payload: atheris.Mutate(payload, max(len(payload) * 2, 16)), rng)
        return out[:max_size]

    atheris.Setup([argv[0], *args, *paths], test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
