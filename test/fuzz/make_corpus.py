#!/usr/bin/env python3
"""Writes the seed inputs for the fuzzers into corpus/<target>/ (each < 4 KB).

Run from anywhere: python3 test/fuzz/make_corpus.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1763700000123  # the fuzzers' fixed clock (fuzz_common.hpp)


def header(count, flags=0, reserved=0, key_id=0, seq=0):
    return b"LT" + struct.pack(">BBHHII", 1, flags, count, reserved, key_id, seq)


def record(driver_id, ts, lat_e7, lon_e7, speed=830, heading=9000, acc=50, status=0, reserved=0):
    return struct.pack(">QqiiHHHBB", driver_id, ts, lat_e7, lon_e7, speed, heading, acc, status, reserved)


def frame(recs, flags=0, reserved=0):
    body = header(len(recs), flags, reserved) + b"".join(recs)
    if flags & 1:
        body += bytes(16)
    return body


good1 = frame([record(42, NOW, 129716000, 775946000)])
mixed = frame([
    record(1, NOW, 900000000, 1800000000, status=2),
    record(2, NOW - 600000, -900000000, -1800000000, 0xFFFF, 0xFFFF, 0xFFFF, 3),
    record(0, NOW, 0, 0),                         # driver 0
    record(3, NOW + 30001, 0, 0),                 # clock
    record(4, NOW, 900000001, 0),                 # range
    record(5, NOW, 0, 0, heading=36000),          # range
    record(6, NOW, 0, 0, status=4),               # range
    record(7, NOW, 0, 0, reserved=1),             # malformed
    record((1 << 63) - 1, NOW, 0, 0),
])
signed = frame([record(9, NOW, 1, 1)], flags=1)
reserved_hdr = frame([record(9, NOW, 1, 1)], reserved=1)
max_frame = frame([record(100 + i, NOW - i, i * 1000, -i * 1000) for i in range(64)])

json_lines = [
    b'{"driver_id":42,"lat":12.9716,"lon":77.5946,"ts":1763700000123,"speed":8.3,"heading":90,"accuracy":5,"status":"available"}',
    b'{"driver_id":"42","latitude":-33.8688,"longitude":151.2093,"timestamp":"2025-11-21T04:40:00.123Z"}',
    b'{"driver_id":7,"lat":1.5,"lon":-2.25,"ts":"2025-11-21T10:10:00.123+05:30","status":"busy","x":{"lat":95,"a":[1,{"lon":2}]}}',
    b'{"driver_id":7,"lat":1.5,"lon":-2.25,"ts":"2025-11-20 20:40-0800","speed":null,"heading":359.99,"accuracy":6553.4}',
    b'{"driver_id":9223372036854775807,"lat":90,"lon":-180,"ts":1763700000000.5,"status":"offline"}',
    b'{"driver_id":1,"lat":1,"lon":2,"ts":true}',
    b'{"driver_id":1,"lat":[1],"lon":2}',
    b'[{"driver_id":1,"lat":1,"lon":2}]',
]
iso = [
    b"2025-11-21T04:40:00.123Z", b"2025-11-21T10:10:00.123+05:30", b"2025-11-20T20:40:00.123-0800",
    b"2025-11-21 04:40", b"2024-02-29T23:59:60.999999-23:59", b"0000-01-01T00:00+01:00", b"9999-12-31T23:59:59Z",
]


def write(target, name, data):
    assert len(data) < 4096, (target, name, len(data))
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# fuzz_binary: one datagram each
for name, data in [("good1", good1), ("mixed", mixed), ("signed", signed), ("reserved_hdr", reserved_hdr),
                   ("max_frame", max_frame), ("truncated", mixed[:-1]), ("header_only", header(1)),
                   ("bad_flags", header(1, flags=0x80) + bytes(32)), ("count65", header(65))]:
    write("fuzz_binary", name, data)

# fuzz_json: lines and timestamps
for i, line in enumerate(json_lines):
    write("fuzz_json", "line%d" % i, line)
for i, t in enumerate(iso):
    write("fuzz_json", "iso%d" % i, t)

# fuzz_stream: [chunk seed][line limit selector] + stream
write("fuzz_stream", "binary_frames", bytes([7, 255]) + good1 + mixed + signed + reserved_hdr)
write("fuzz_stream", "binary_then_bad", bytes([3, 255]) + good1 + b"XYZ" + good1)
write("fuzz_stream", "binary_partial", bytes([200, 255]) + good1 + mixed[:100])
write("fuzz_stream", "json_crlf_blank", bytes([1, 60]) + b"\r\n".join(json_lines[:3]) + b"\n\n\r\n" + json_lines[3] + b"\n")
write("fuzz_stream", "json_too_long", bytes([9, 10]) + json_lines[0] + b"\n" + b'{"driver_id":1,"lat":1,"lon":2}\n' + b"{" + b"x" * 200 + b"\n{}\n")
write("fuzz_stream", "json_no_newline", bytes([5, 200]) + json_lines[1])
