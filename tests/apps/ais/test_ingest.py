"""Reading AIS as users have it: the real DMA / AisLib / pyais / NOAA files, every wrapper, counted skips."""
import gzip

import numpy as np
import pandas as pd
import pytest

from apps.ais.clean import clean
from apps.ais.ingest import read
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


def test_rate_of_turn_and_navigation_status_are_decoded_with_not_available_as_missing(ais):
    """The DMA log's class-A reports carry a rate of turn (-128 = not available becomes NaN in cleaning) and a
    navigation status (15 = not defined); class B reports carry neither."""
    df, _ = read(ais / "dma_ais_sample_20131112.nmea.gz")
    a = df[df.msg_type.isin([1, 2, 3])]
    assert a.rot.notna().all() and a.status.notna().all() and df[df.msg_type == 18].rot.isna().all()
    tracks, counts = clean(df)
    ta = tracks[tracks.msg_type.isin([1, 2, 3])]
    assert counts["not_available_rot"] > 0 and (ta.rot.dropna().abs() < 127).all()
    # measured: 87 % of class-A reports are not -128, but 15 % of them are +-127 ("turning, no rate"): 73 % carry a
    # rate, 8 % a non-zero one
    assert 0.65 < ta.rot.notna().mean() < 0.8 and 0.05 < (ta.rot.fillna(0) != 0).mean() < 0.15
    assert set(ta.status.dropna().unique()) <= set(range(15)) and ta.status.notna().mean() > 0.9


def test_a_bom_a_zip_of_dma_csvs_and_bad_rows_skipped_and_counted(ais, tmp_path):
    import zipfile

    nmea = tmp_path / "bom.nmea"
    lines = (ais / "dma_aislib_stream_example_20100611.nmea").read_bytes().splitlines(keepends=True)[:400]
    nmea.write_bytes(b"\xef\xbb\xbf" + b"".join(lines))
    df, st = read(nmea)
    assert len(df) > 50 and st.decode_errors == 0  # the BOM neither makes it CSV nor spoils the first line
    header = "# Timestamp,Type of mobile,MMSI,Latitude,Longitude,Navigational status,ROT,SOG,COG,Heading\n"
    day1 = header + ("12/11/2013 12:00:01,Class A,219000001,55.1,10.2,Under way using engine,0,10.5,90.0,91\n"
                     "12/11/2013 12:00:11,Class A,219000001,55.1,north,Moored,,10.5,90.0,91\n"
                     "12/11/2013 12:00:21,Class A,219000001,55.1,10.2032,At anchor,-128,10.5,90.0,511\n")
    day2 = header + "13/11/2013 12:00:01,Class A,219000002,55.2,10.3,Engaged in fishing,3,4.0,10.0,12\n"
    z = tmp_path / "aisdk-2013-11.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("aisdk-2013-11-12.csv", day1)
        f.writestr("aisdk-2013-11-13.csv", day2)
    df, st = read(z)
    assert list(df.mmsi) == [219000001, 219000001, 219000002] and list(df.status) == [0, 1, 7]
    assert st.bad_rows == 1 and "aisdk-2013-11-12.csv: line 3, column 'Longitude': 'north'" in st.first_bad
    assert df.rot.tolist()[:2] == [0.0, -128.0] and df.rot.tolist()[2] == 3.0


def test_own_ids_are_kept_when_named_and_a_rule_that_drops_everything_says_which(tmp_path):
    """Vessel ids 1..3 (not MMSIs), fixes every 10 minutes, no SOG / COG: named, they are the user's ids; unnamed
    (a NOAA-like header), the MMSI rule drops every report and the error names the rule."""
    rows = [f"{v},2024-01-01T{h:02d}:{m:02d}:00,{55 + 0.01 * v + 0.001 * (6 * h + m // 10)},{10.0 + 0.002 * v}"
            for v in (1, 2, 3) for h in range(3) for m in range(0, 60, 10)]
    p = tmp_path / "fleet.csv"
    p.write_text("vessel,when,y,x\n" + "\n".join(rows) + "\n")
    df, _ = read(p, columns="id=vessel,time=when,lat=y,lon=x")
    tracks, counts = clean(df, mmsi_rule=False)
    assert sorted(tracks.mmsi.unique()) == [1, 2, 3] and counts["missing_sog"] == 0
    assert tracks.sog.notna().all() and tracks.cog.notna().all()  # derived, never 0 by default
    noaa = tmp_path / "noaa_like.csv"
    noaa.write_text("MMSI,BaseDateTime,LAT,LON\n" + "\n".join(rows) + "\n")
    df, _ = read(noaa)
    with pytest.raises(DataError, match=r"after the rule 'non-vessel MMSI .*--data.columns id=COL"):
        clean(df)


def test_text_ids_are_numbered_in_order_of_appearance(tmp_path):
    p = tmp_path / "named.csv"
    p.write_text("ship,ts,y,x\nALPHA,2024-01-01 00:00:00,55.0,10.0\nBRAVO,2024-01-01 00:00:05,55.1,10.0\n"
                 "ALPHA,2024-01-01 00:00:10,55.0001,10.0\n")
    df, _ = read(p, columns="id=ship,time=ts,lat=y,lon=x")
    assert list(df.mmsi) == [1, 2, 1]


def test_a_csv_read_in_chunks_equals_one_read_with_line_numbers_and_text_ids_across_chunks(ais, tmp_path):
    from apps.ais.tabular import read_csv

    noaa = ais / "noaa_marinecadastre_20230101_sample.csv"
    whole, _ = read_csv(noaa)
    parts, st = read_csv(noaa, chunk_rows=7)
    pd.testing.assert_frame_equal(whole.reset_index(drop=True), parts.reset_index(drop=True))
    assert st.lines == 1001 and st.position_reports == 1000
    p = tmp_path / "named.csv"
    p.write_text("ship,ts,y,x\nA,2024-01-01 00:00:00,55.0,10.0\nB,2024-01-01 00:00:05,55.1,10.0\n"
                 "C,2024-01-01 00:00:06,55.1,oops\nA,2024-01-01 00:00:10,55.0001,10.0\nB,2024-01-01 00:00:15,55.1,10.0\n")
    df, st = read_csv(p, {"id": "ship", "time": "ts", "lat": "y", "lon": "x"}, chunk_rows=2)
    assert list(df.mmsi) == [1, 2, 1, 2] and st.bad_rows == 1
    assert st.first_bad.endswith("line 4, column 'x': 'oops' is not a number")


def test_reports_kept_as_array_blocks_read_the_same_at_any_block_size(ais, monkeypatch):
    from apps.ais import nmea

    whole, _ = read(ais / "dma_aislib_stream_example_20100611.nmea")
    monkeypatch.setattr(nmea, "BLOCK", 97)
    blocks, _ = read(ais / "dma_aislib_stream_example_20100611.nmea")
    pd.testing.assert_frame_equal(whole, blocks)
    assert len(whole) > 97 * 10 and str(whole.mmsi.dtype) == "int64"
