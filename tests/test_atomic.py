"""Atomic writes: the old file survives a failed write and no temporary file is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from growsearch.atomic import atomic_write, atomic_write_text


def test_write_then_failed_write_keeps_old_file(tmp_path: Path) -> None:
    p = atomic_write_text(tmp_path / "sub" / "f.json", "old\n")
    assert p.read_text() == "old\n"

    def boom(fh: object) -> None:
        fh.write("half")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(p, boom)
    assert p.read_text() == "old\n"
    assert [x.name for x in p.parent.iterdir()] == ["f.json"]


def test_binary_write(tmp_path: Path) -> None:
    p = atomic_write(tmp_path / "b.bin", lambda fh: fh.write(b"\x00\x01"), binary=True)
    assert p.read_bytes() == b"\x00\x01"
