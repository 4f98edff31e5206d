"""``python -m pipelines.data get``: downloads from a loopback HTTP mirror of the real files, checks every sha256, and
leaves nothing behind when a file is wrong or the mirror is unreachable."""
import functools
import http.server
import os
import socket
import threading

import pytest

from core.datadir import DataError, sha256
from pipelines import data as dl


@pytest.fixture
def mirror(tmp_path, data_root):
    """A mirror laid out as <repo>/<ref>/<folder>/<name> (raw.githubusercontent.com's layout), its files links to the
    real copies in ../shared/data, served on loopback; -> (base URL, mirror folder)."""
    root = tmp_path / "mirror"
    for src in dl.SOURCES.values():
        for row in src.files():
            link = root / src.repo / src.ref / src.folder / (row.get("remote") or row["name"])
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(data_root / src.into / row["name"])
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_every_source_lists_the_files_of_the_shared_copies(data_root):
    for app in dl.APPS:
        assert dl.missing(app, data_root) == [], app


def test_remote_paths_are_the_ones_the_data_notes_name(data_root):
    """The URL of a file is <repo>/<ref>/<path in the repository> as the shared copies' SOURCES.md / manifest state it
    (the AIS log is ``ais-sample.txt.gz`` upstream)."""
    notes = {app: (data_root / app / "SOURCES.md").read_text() for app in ("ais", "forecast", "traffic")}
    notes["traffic"] += (data_root / "traffic" / "manifest.csv").read_text()
    for key, app in [("dma-ais", "ais"), ("ett", "forecast"), ("ndpi-pcap", "traffic"), ("ndpi-result", "traffic")]:
        src = dl.SOURCES[key]
        for row in src.files():
            path = src.url("", row).split(f"/{src.repo}/{src.ref}/", 1)[1]
            assert path in notes[app] and src.repo in notes[app], (key, path)


def test_get_graph_downloads_verified_files_that_the_app_then_loads(mirror, tmp_path, monkeypatch):
    url, _ = mirror
    dest = tmp_path / "data"
    written = dl.get("graph", root=dest, mirror=url, log=lambda *_: None)
    assert len(written) == 8 and dl.missing("graph", dest) == []
    monkeypatch.setenv("FFN_DATA_DIR", str(dest))
    monkeypatch.setenv("FFN_CACHE", str(tmp_path / "cache"))
    from apps.graph.data import load

    _, graph = load("Cora")
    assert (graph.num_nodes, int(graph.train_mask.sum())) == (2708, 140)
    assert dl.get("graph", root=dest, mirror=url, log=lambda *_: None) == []  # present and verified: nothing fetched


def test_get_traffic_rebuilds_ndpi_flow_labels_byte_for_byte(mirror, tmp_path, data_root):
    url, _ = mirror
    dest = tmp_path / "data"
    dl.get("traffic", root=dest, mirror=url, log=lambda *_: None)
    labels = dest / dl.FLOW_LABELS[0]
    assert sha256(labels) == sha256(data_root / dl.FLOW_LABELS[0]) == dl.FLOW_LABELS[1]
    assert len(list((dest / "traffic/ndpi/pcap").iterdir())) == 543


def test_a_wrong_checksum_leaves_nothing_behind(mirror, tmp_path):
    url, root = mirror
    (victim,) = [p for p in root.rglob("ind.cora.y")]
    victim.unlink()
    victim.write_bytes(b"not the planetoid labels")
    dest = tmp_path / "data"
    dest.mkdir()
    with pytest.raises(DataError, match=r"ind\.cora\.y: sha256 .* does not match"):
        dl.get("graph", root=dest, mirror=url, workers=1, log=lambda *_: None)
    assert _files(dest) == [] and list(dest.iterdir()) == []  # not the 7 good files, no staging folder


def test_a_modified_local_file_is_refused_not_overwritten(mirror, tmp_path, data_root):
    url, _ = mirror
    dest = tmp_path / "data"
    target = dest / "ais" / "dma_ais_sample_20131112.nmea.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"mine")
    with pytest.raises(DataError, match="present but its sha256"):
        dl.get("ais", root=dest, mirror=url, log=lambda *_: None)
    assert target.read_bytes() == b"mine"


def test_offline_is_one_line_saying_what_to_put_where(tmp_path, capsys, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("FFN_DATA_DIR", str(tmp_path / "data"))
    assert dl.main(["get", "ais", "--mirror", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: cannot reach 127.0.0.1")
    assert "dma-ais/AisAbnormal@186e4ccf:ais-ab-stat-builder/src/test/resources/" in err
    assert "(ais-sample.txt.gz as dma_ais_sample_20131112.nmea.gz)" in err
    assert str(tmp_path / "data" / "ais") in err
    assert not (tmp_path / "data").exists() or _files(tmp_path / "data") == []


def test_status_lists_every_app(data_root):
    text = dl.status(data_root)
    assert all(f"\n{app} " in text for app in dl.APPS)
    assert os.fspath(data_root) in text
