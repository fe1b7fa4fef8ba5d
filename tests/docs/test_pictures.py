"""The docs' pictures exist, are real PNG files of a sensible size, and the pages that should show them do.

The pictures are made from a real run by `python docs/pictures.py` (headless Chromium); this
test does not rerun it — it checks what is committed, not pixels.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMG = ROOT / "docs" / "img"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: picture -> the pages that show it
PICTURES = {
    "drift-report.png": ["docs/how-to/monitoring.md", "docs/tutorial.md", "examples/quickstart/README.md"],
}


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The chunks of a PNG file, each CRC checked."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    chunks, pos = [], 8
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in chunk {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


@pytest.mark.parametrize("name", sorted(PICTURES))
def test_picture_is_a_valid_png_of_a_sensible_size(name: str) -> None:
    path = IMG / name
    assert path.is_file(), f"{path} is missing: run `python docs/pictures.py`"
    data = path.read_bytes()
    assert len(data) < 300_000, f"{name} is {len(data)} bytes: install pngquant and rerun docs/pictures.py"
    chunks = png_chunks(data)
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert 600 <= width <= 2000 and 400 <= height <= 3000, (width, height)
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(pixels) >= height * (width + 1), "the image data is truncated"


@pytest.mark.parametrize(("name", "page"), [(n, p) for n, pages in sorted(PICTURES.items()) for p in pages])
def test_picture_is_shown_where_people_look(name: str, page: str) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    images = re.findall(r"!\[([^\]]+)\]\(([^)\s]+)\)", text)
    targets = {(ROOT / page).parent.joinpath(src).resolve(): alt for alt, src in images}
    assert (IMG / name).resolve() in targets, f"{page} does not show docs/img/{name}"
    assert len(targets[(IMG / name).resolve()].split()) >= 5, f"{page}: give docs/img/{name} a descriptive alt text"


def test_every_picture_is_used_and_documented() -> None:
    on_disk = {p.name for p in IMG.iterdir() if p.suffix in (".png", ".svg", ".jpg")}
    assert on_disk == set(PICTURES), "add new pictures to PICTURES (and to docs/pictures.py)"
    assert "docs/pictures.py" in (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
