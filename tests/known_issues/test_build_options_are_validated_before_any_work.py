"""Issue 9.7 (and the option cases of 9.9): option values that silently produced garbage
(`--groups 0` or a negative count built no train split with exit 0; a misspelt split name in
`--groups` was ignored; `--snr-range 5` died with "not enough values to unpack"; a sample rate
the codec cannot store failed after decoding everything). Every value is checked before any
work; an invalid one exits non-zero naming the option and the accepted form."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from teminal.pipeline.cli import main

BAD = [
    (["--groups", "0"], "--groups"), (["--groups", "-5"], "--groups"),
    (["--groups", "abc"], "--groups"), (["--groups", "1.5"], "--groups"),
    (["--groups", "trian=10"], "unknown split name"), (["--groups", "train=10,tset=2"], "'tset'"),
    (["--groups", "train=0,val=0,test=0"], "at least one split"),
    (["--groups", "train=-1"], "--groups"), (["--groups", "train=10,train=5"], "each split once"),
    (["--snr-range", "5"], "--snr-range"), (["--snr-range", "5,"], "--snr-range"),
    (["--snr-range", "a,b"], "--snr-range"), (["--snr-range", "1,2,3"], "--snr-range"),
    (["--snr-range", "nan,5"], "--snr-range"), (["--snr-range", "-inf,5"], "--snr-range"),
    (["--snr-range", "10,-10"], "low end is above"), (["--snr-range", "-100,0"], "-60..60"),
    (["--sample-rate", "0"], "--sample-rate"), (["--sample-rate", "-16000"], "--sample-rate"),
    (["--sample-rate", "10"], "--sample-rate"), (["--sample-rate", "1000000"], "--sample-rate"),
    (["--clip-seconds", "0"], "--clip-seconds"), (["--clip-seconds", "-1"], "--clip-seconds"),
    (["--clip-seconds", "nan"], "--clip-seconds"), (["--clip-seconds", "inf"], "--clip-seconds"),
    (["--groups-per-clip", "0"], "--groups-per-clip"),
    (["--groups-per-clip", "-2"], "--groups-per-clip"),
    (["--groups-per-clip", "nan"], "--groups-per-clip"),
    (["--groups-per-clip", "inf"], "--groups-per-clip"),
    (["--shard-size", "0"], "--shard-size"), (["--shard-size", "-3"], "--shard-size"),
    (["--workers", "0"], "--workers"), (["--workers", "-1"], "--workers"),
    (["--part", "3/2"], "--part"), (["--part", "1/0"], "--part"), (["--part", "x"], "--part"),
    (["--seed", "-1"], "--seed"),
    (["--stages", "c"], "stages"), (["--stages", ","], "stages"),
    (["--splits", "test=5,test=4"], "--splits"),
]


@pytest.mark.parametrize("args,named", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_an_invalid_option_value_exits_naming_it_before_any_work(small_source, tmp_path, args,
                                                                  named):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--root", str(small_source), "--out", str(out),
                                       "--no-progress", *args])
    assert result.exit_code != 0, result.output
    assert named in result.output and "Traceback" not in result.output, result.output
    assert not out.exists(), "work started before the options were checked"


def test_a_rate_the_codec_cannot_store_is_refused_before_decoding():
    from teminal.pipeline.audio import check_codec_rate

    for rate in (655351, 700000, 10**6):
        with pytest.raises(ValueError, match=f"--sample-rate {rate}: codec flac cannot store"):
            check_codec_rate("flac", rate)
    check_codec_rate("pcm", 700000)
    check_codec_rate("flac", 48000)
