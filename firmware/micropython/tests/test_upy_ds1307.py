"""DS1307 codec against shared/vectors/ds1307.json; epoch 2000 vs 1970; the RTC clock wrapper."""

from _support import raises, vectors
from iotcollector import ds1307
from iotcollector.ds1307 import DS1307, RtcClock
from simparts import Ds1307Chip, SimI2C


def test_decode_vectors():
    for v in vectors("ds1307.json"):
        unix, halted = ds1307.decode(bytes(v["registers"]))
        assert unix == v["unix"], v["name"]
        assert halted == v["halted"], v["name"]
        assert bytes(v["registers"]).hex() == v["registers_hex"]


def test_encode_vectors():
    n = 0
    for v in vectors("ds1307.json"):
        if v["writes_as"] is not None:
            assert list(ds1307.encode(v["unix"])) == v["writes_as"], v["name"]
            n += 1
    assert n >= 4


def test_round_trip_every_month_and_leap_years():
    for year in (2000, 2001, 2024, 2099):
        for month in range(1, 13):
            for day in (1, 28):
                unix = ds1307.days_from_civil(year, month, day) * 86400 + 86399
                assert ds1307.civil_from_days(unix // 86400) == (year, month, day)
                assert ds1307.decode(ds1307.encode(unix)) == (unix, False)
    assert ds1307.civil_from_days(ds1307.days_from_civil(2024, 2, 29)) == (2024, 2, 29)
    assert ds1307.days_from_civil(2100, 3, 1) - ds1307.days_from_civil(2100, 2, 28) == 1  # 2100: no leap day


def test_reset_chip_reads_2000_and_counts_as_lost():
    unix, halted = ds1307.decode(bytes((0, 0, 0, 7, 1, 1, 0)))
    assert unix == ds1307.UNIX_2000 == 946684800
    assert not ds1307.time_valid(unix, False)
    assert not ds1307.time_valid(ds1307.UNIX_2001 + 5, True)  # halted: never valid
    assert ds1307.time_valid(ds1307.UNIX_2001, False)


def test_epoch_2000_vs_1970():
    # time.time() counts from 2000 on some ports and from 1970 on others; both mean the same instant
    assert ds1307.unix_from_epoch(0, 2000) == 946684800
    assert ds1307.unix_from_epoch(0, 1970) == 0
    assert ds1307.unix_from_epoch(753315200, 2000) == 1700000000
    assert ds1307.epoch_from_unix(1700000000, 2000) == 753315200
    assert ds1307.epoch_from_unix(1700000000, 1970) == 1700000000
    raises(ValueError, ds1307.unix_from_epoch, 0, 1980)
    # a clock counting from 1970 that was never set (5 s after its epoch) reads as lost, never rewritten
    assert not ds1307.time_valid(5, False)


def test_encode_refuses_years_outside_chip():
    raises(ValueError, ds1307.encode, ds1307.UNIX_2000 - 1)
    raises(ValueError, ds1307.encode, ds1307.UNIX_2100)


def test_rtc_clock_on_bus():
    bus = SimI2C()
    chip = Ds1307Chip()
    bus.attach(0x68, chip)
    rtc = RtcClock(DS1307(bus))
    assert rtc.lost()  # a fresh chip is halted
    assert rtc.now_ms() == (None, "none")
    assert rtc.set_ms(1700000000500)
    assert not rtc.lost()
    assert rtc.now_ms() == (1700000000000, "rtc")
    chip.tick(61)
    assert rtc.now_ms() == (1700000061000, "rtc")
    assert not rtc.set_ms(5000)  # a 1970 time does not fit the chip: refused
    bus.detach(0x68)
    assert rtc.now_ms() == (None, "none")  # a chip that stopped answering is "no clock", not a crash


def test_chip_keeps_twelve_hour_mode_while_ticking():
    chip = Ds1307Chip()
    v = [x for x in vectors("ds1307.json") if x["name"] == "12-hour mode 10 PM"][0]
    chip.mem[0:7] = bytes(v["registers"])
    chip.tick(3600)
    assert chip.mem[2] & 0x40
    assert ds1307.decode(chip.mem[0:7]) == (v["unix"] + 3600, False)
