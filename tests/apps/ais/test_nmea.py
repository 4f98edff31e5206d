"""Reading AIS as users have it: the real DMA / AisLib / pyais / NOAA files, every wrapper, counted skips."""
import gzip

import numpy as np
import pytest

from apps.ais.clean import clean
from apps.ais.nmea import read
from core.datadir import DataError


@pytest.fixture(scope="module")
def ais(data_root):
    return data_root / "ais"


def test_dma_log_counts_match_its_sources_md(ais):
    df, st = read(ais / "dma_ais_sample_20131112.nmea.gz")  # gzip, $PGHP wrappers, tag-block-only lines
    assert (st.sentences, st.messages, st.position_reports) == (26146, 26077, 24688)
    assert st.checksum_errors == st.empty_payloads == st.lost_fragments == st.decode_errors == 0
    assert st.other_nmea == 973  # $PSTT / $PFEC
    assert df.mmsi.nunique() == 1438
    assert df.time.min() >= 1384257600 and df.time.max() < 1384257600 + 300  # 2013-11-12 12:00:00 + 5 min


def test_aislib_stream_multipart_and_trailing_unix_time(ais):
    df, st = read(ais / "dma_aislib_stream_example_20100611.nmea")
    assert st.messages == 4051 and st.lost_fragments == 0 and st.decode_errors == 0
    assert df.mmsi.nunique() == 1398
    assert int(((df.lat == 91) | (df.lon == 181)).sum()) == 23
    tracks, counts = clean(df)
    assert counts["not_available_position"] == 23


def test_plain_aivdm_decodes_but_tracks_need_a_clock(ais):
    with pytest.raises(DataError, match="no receive times"):
        read(ais / "pyais_nmea_data_sample.txt")
    df, st = read(ais / "pyais_nmea_data_sample.txt", time_source="message_second", day="2020-01-01")
    assert st.empty_payloads == 100 and st.lost_fragments == 20  # counted, not fatal
    assert st.messages == 778 and len(df) == 762


def _nmea(body: str) -> str:
    """``!body*hh`` with the XOR checksum of body."""
    c = 0
    for ch in body:
        c ^= ord(ch)
    return f"!{body}*{c:02X}"


def test_tag_blocks_trailing_times_and_corrupt_lines_are_counted(tmp_path):
    good = "!AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0*26"
    lines = [
        "\\s:2573345,c:1617235200*0E\\" + good,  # NMEA 4.0 tag block, seconds
        "\\s:2573345,c:1617235205000*00\\" + good.replace("0*26", "0*26"),  # milliseconds
        good + ",1617235210",  # unix time after the checksum
        good[:-2] + "00",  # checksum error
        "!AIVDM,1,1,,B,,0*25",  # empty payload
        _nmea("AIVDM,2,2,7,A,00000000000,2"),  # orphan second fragment
        "garbage line",
    ]
    p = tmp_path / "feed.nmea"
    p.write_text("\n".join(lines) + "\n")
    df, st = read(p)
    assert list(df.time) == [1617235200.0, 1617235205.0, 1617235210.0]
    assert (st.checksum_errors, st.empty_payloads, st.lost_fragments, st.decode_errors) == (1, 1, 1, 1)


def test_noaa_and_dma_csv_and_named_columns(ais, tmp_path):
    df, st = read(ais / "noaa_marinecadastre_20230101_sample.csv")
    assert len(df) == 1000 and df.time.min() == pytest.approx(1673395200.0)  # 2023-01-11, not the file's name
    dma = tmp_path / "dma.csv"
    dma.write_text("# Timestamp,Type of mobile,MMSI,Latitude,Longitude,Navigational status,ROT,SOG,COG,Heading\n"
                   "12/11/2013 12:00:01,Class A,219000001,55.1,10.2,Under way,0,10.5,90.0,91\n"
                   "12/11/2013 12:00:11,Class A,219000001,55.1,10.2016,Under way,0,10.5,,511\n")
    d, _ = read(dma)
    assert list(d.time - d.time.iloc[0]) == [0.0, 10.0] and np.isnan(d.cog.iloc[1])
    named = tmp_path / "mine.csv"
    named.write_text("ship,ts,y,x\n1,2024-01-01 00:00:00,55.0,10.0\n1,2024-01-01 00:00:10,55.0001,10.0\n")
    n, _ = read(named, columns="id=ship,time=ts,lat=y,lon=x")
    assert list(n.mmsi) == [1, 1] and np.isnan(n.sog).all()  # derived by clean()
    tracks, counts = clean(n.assign(mmsi=219000001))
    assert counts["derived_sog"] == 2 and tracks.sog.iloc[1] == pytest.approx(11.12 / 10 / 0.5144, rel=0.01)


@pytest.mark.parametrize("text,message", [
    ("MMSI,BaseDateTime,LAT\n1,2023-01-01T00:00:00,5\n", "unknown CSV layout"),
    ("MMSI,BaseDateTime,LAT,LON,SOG\n1,2023-01-01T00:00:00,5,x,1\n", "line 2, column 'LON': 'x' is not a number"),
    ("MMSI,BaseDateTime,LAT,LON\n1,yesterday,5,6\n", "line 2, column 'BaseDateTime': 'yesterday' is not a time"),
    ("", "empty file"),
])
def test_bad_csv_names_file_line_and_column(tmp_path, text, message):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=message) as e:
        read(p)
    assert str(p) in str(e.value)


def test_gzip_is_sniffed_by_content_not_name(ais, tmp_path):
    p = tmp_path / "log.txt"  # no .gz
    p.write_bytes(gzip.compress(b"$PGHP,1,2013,11,12,12,0,0,11,219,,2190067,1,62*26\r\n"
                                b"!BSVDM,1,1,,A,13@:`L001N0ded0O6Fp8wW<00<0t,0*62\r\n"))
    df, st = read(p)
    assert len(df) == 1 and df.mmsi.iloc[0] == 218278000 and df.time.iloc[0] == pytest.approx(1384257600.011)
