"""This machine's store of generated corpora: a second folder gets a verified copy, a damaged
or partial entry is never trusted, and a store that cannot be written changes nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from growsearch.data import synthetic, synthetic_store

SEED, SIZE = 7, "tiny"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of this test's own, and the entry the corpus of SEED, SIZE gets there."""
    monkeypatch.setenv("GROWSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    entry = synthetic_store.entry(SEED, SIZE, synthetic.GENERATOR_VERSION, synthetic.SIZES[SIZE])
    assert entry is not None and entry.is_relative_to(tmp_path / "cache")
    return entry


def _ensure(root: Path, caplog: pytest.LogCaptureFixture) -> str:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="growsearch.data.synthetic"):
        assert synthetic.ensure_corpus(root, seed=SEED, size=SIZE) is True
    return caplog.text


def test_a_second_folder_gets_the_same_bytes_copied(tmp_path: Path, store: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    first = _ensure(tmp_path / "a", caplog)
    assert "copied from" not in first and store.is_dir()
    second = _ensure(tmp_path / "b", caplog)
    assert f"copied from {store}" in second
    a, b = synthetic_store.digest(tmp_path / "a"), synthetic_store.digest(tmp_path / "b")
    assert a == b == synthetic_store.digest(store)
    fresh = tmp_path / "fresh"
    synthetic.generate(fresh, seed=SEED, size=SIZE)  # what generating would have written
    assert synthetic_store.digest(fresh) == a
    assert not list(tmp_path.glob(".b.tmp-*")) and not list(store.parent.glob(".*tmp-*"))


@pytest.mark.parametrize("damage", ["truncated_flac", "edited_protocol", "extra_file", "no_digest"])
def test_a_damaged_entry_is_generated_again_and_repaired(tmp_path: Path, store: Path, damage: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    _ensure(tmp_path / "a", caplog)
    good = synthetic_store.digest(tmp_path / "a")
    if damage == "truncated_flac":
        flac = sorted(store.rglob("*.flac"))[3]
        flac.write_bytes(flac.read_bytes()[:100])
    elif damage == "edited_protocol":
        proto = next(store.rglob("*.trn.txt"))
        proto.write_text(proto.read_text().replace("bonafide", "spoof", 1))
    elif damage == "extra_file":
        (store / "ASVspoof2019_LA_train" / "flac" / "LA_T_9999999.flac").write_bytes(b"x")
    else:  # a process stopped between storing the copy and writing its digest
        store.with_name(store.name + ".sha256").unlink()
    text = _ensure(tmp_path / "b", caplog)
    assert "copied from" not in text
    assert ("does not match its digest" in text) == (damage != "no_digest")
    assert synthetic_store.digest(tmp_path / "b") == good  # generated, not the damaged bytes
    assert synthetic_store.digest(store) == good  # and the store holds a good copy again
    assert "copied from" in _ensure(tmp_path / "c", caplog)


def test_a_store_that_cannot_be_written_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "cache").write_text("a file where the cache folder would be")
    monkeypatch.setenv("GROWSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    _ensure(tmp_path / "a", caplog)
    text = _ensure(tmp_path / "b", caplog)
    assert "copied from" not in text
    assert synthetic_store.digest(tmp_path / "a") == synthetic_store.digest(tmp_path / "b")
    assert (tmp_path / "cache").read_text().startswith("a file")
