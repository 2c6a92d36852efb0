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

# fuzz_http: [chunk seed] + requests as a connection receives them
http = [
    b"GET /v1/orders/42/stream?access_token=abc HTTP/1.1\r\nHost: h\r\nLast-Event-ID: 7\r\n\r\n",
    b"POST /v1/pings HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 31\r\n\r\n"
    b'{"driver_id":1,"lat":1,"lon":2}',
    b"POST /v1/osmand HTTP/1.1\r\nTransfer-Encoding: chunked\r\nAuthorization: Basic dTpwdw==\r\n\r\n"
    b"9\r\nid=1&lat=\r\n3\r\n1.5\r\n0\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n\r\nGET /metrics HTTP/1.0\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    b"POST /v1/pings HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n[]",
    b"GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
]
for i, req in enumerate(http):
    write("fuzz_http", "req%d" % i, bytes([i * 37]) + req)

# fuzz_jwt: tokens and payloads
for i, t in enumerate([
        b'{"iss":"livetrack","iat":1763700000,"exp":1763703600,"scope":"watch","order_id":42}',
        b'{"iss": "livetrack", "exp": 1763703600, "scope": "dispatch", "area": [[[[77.5, 12.9], [77.7, 12.9], '
        b'[77.7, 13.1], [77.5, 12.9]]]]}',
        b'{"iss":"livetrack","exp":1763703600,"scope":"device","driver_id":9223372036854775807}',
        b"eyJhbGciOiJub25lIn0.eyJpc3MiOiJsaXZldHJhY2sifQ.",
        b"eyJhbGciOiJIUzI1NiJ9.e30.AAAA"]):
    write("fuzz_jwt", "t%d" % i, t)

# fuzz_sse: [chunk size] + data
for i, d in enumerate([b'{"type": "status", "order_id": 1}', b"a\r\nb\rc\nd\r\r\n\n", b"\xef\xbb\xbfdata: x\n\n: c\nid: 9\n\n"]):
    write("fuzz_sse", "d%d" % i, bytes([i + 1]) + d)

# fuzz_http_ingest: [who/policy] + body
ingest = [
    b'{"driver_id":42,"lat":12.97,"lon":77.59,"ts":1763700000123}\n{"driver_id":7,"lat":1,"lon":2}\n',
    b'[{"driver_id":42,"latitude":1,"longitude":2,"timestamp":"2025-11-21T04:40:00Z"},3]',
    good1 + mixed,
    b"id=42&lat=60.0&lon=30.0&timestamp=1763700000&speed=10&bearing=7.5&accuracy=5",
    b'{"_type":"location","lat":48.85,"lon":2.29,"tst":1763700000,"vel":36,"cog":56,"acc":10,"topic":"owntracks/u/42"}',
    b'{"location":{"timestamp":"2025-11-21T04:40:00.000Z","coords":{"latitude":37.4,"longitude":-122.1,"speed":3,'
    b'"heading":-1,"accuracy":5}},"device_id":"42"}',
]
for i, b in enumerate(ingest):
    write("fuzz_http_ingest", "b%d" % i, bytes([i * 5]) + b)

# fuzz_ws: [chunk seed] + frames from a client
def ws_frame(first, payload, mask=True):
    n = len(payload)
    f = bytes([first])
    m = 0x80 if mask else 0
    if n < 126:
        f += bytes([m | n])
    elif n < 65536:
        f += bytes([m | 126]) + struct.pack(">H", n)
    else:
        f += bytes([m | 127]) + struct.pack(">Q", n)
    if not mask:
        return f + payload
    key = b"\x37\xfa\x21\x3d"
    return f + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


for i, frames in enumerate([
        ws_frame(0x81, b'{"op":"subscribe","order_id":1,"token":"x"}'),
        ws_frame(0x01, b"Hel") + ws_frame(0x89, b"ping") + ws_frame(0x80, b"lo"),
        ws_frame(0x88, b"\x03\xe8bye"),
        ws_frame(0x81, b"x", mask=False),
        ws_frame(0x81, "\u00e9\u20ac".encode()) + ws_frame(0x81, b"\xff"),
        ws_frame(0x82, bytes(300)) + ws_frame(0x8a, b"")]):
    write("fuzz_ws", "f%d" % i, bytes([i * 11]) + frames)


# fuzz_mqtt: [version bit + chunk seed] + what a broker sends
def mqtt_packet(first, body):
    n, rl = len(body), b""
    while True:
        b = n % 128
        n //= 128
        rl += bytes([b | (0x80 if n else 0)])
        if not n:
            return bytes([first]) + rl + body


def mqtt_str(s):
    return struct.pack(">H", len(s)) + s


connack5 = mqtt_packet(0x20, b"\x01\x00" + bytes([6]) + b"\x21\x00\x14\x13\x00\x3c")
connack3 = mqtt_packet(0x20, b"\x00\x00")
pub5 = mqtt_packet(0x32, mqtt_str(b"livetrack/blr/42") + b"\x00\x07" + b"\x00" + json_lines[0])
pub3 = mqtt_packet(0x3a, mqtt_str(b"livetrack/del/7") + b"\x01\x02" + good1)
owntracks = mqtt_packet(0x30, mqtt_str(b"owntracks/u/9") + b"\x00" +
                        b'{"_type":"location","lat":48.85,"lon":2.29,"tst":1763700000}')
suback = mqtt_packet(0x90, b"\x00\x01\x00\x01\x80")
for i, (first, stream) in enumerate([
        (1, connack5 + suback + pub5 + owntracks + mqtt_packet(0xD0, b"")),
        (0, connack3 + mqtt_packet(0x90, b"\x00\x01\x01") + pub3 + mqtt_packet(0xD0, b"")),
        (1 | 14, connack5 + pub5 * 3),
        (1, mqtt_packet(0xE0, b"\x8e\x00")),
        (1, mqtt_packet(0x32, mqtt_str(b"a/+/1") + b"\x00\x01\x00")),
        (0, b"\x30\xff\xff\xff\xff\x7f"),
        (1, mqtt_packet(0x40, b"\x00\x05\x10\x00"))]):
    write("fuzz_mqtt", "s%d" % i, bytes([first]) + stream)

# fuzz_http_ingest also reads its bodies as MQTT payloads
write("fuzz_http_ingest", "mqtt_owntracks",
      bytes([0]) + b'{"_type":"location","lat":48.85,"lon":2.29,"tst":1763700000,"vel":36,"cog":56,"acc":10}')
write("fuzz_http_ingest", "mqtt_no_driver", bytes([0]) + b'{"lat":12.97,"lon":77.59,"ts":1763700000123}')


# fuzz_segment: encoded segments (what core/segment.cpp writes)
def uvar(v):
    out = b""
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80])
        v >>= 7
    return out + bytes([v])


def svar(v):
    return uvar((v << 1) ^ (v >> 63) if v >= 0 else ((-v) << 1) - 1)


def segment(fixes, present=7):
    out = bytes([1]) + uvar(len(fixes)) + bytes([present])
    pts = pdelta = plat = plon = plag = 0
    popt = [0, 0, 0]
    for i, (ts, lat, lon, spd, hdg, acc, rec) in enumerate(fixes):
        lag = rec - ts * 1000
        if i == 0:
            out += svar(ts)
        else:
            d = ts - pts
            out += svar(d if i == 1 else d - pdelta)
            pdelta = d
        out += svar(lat - plat) + svar(lon - plon) + svar(lag - plag)
        for k, v in enumerate((spd, hdg, acc)):
            if present & (1 << k):
                out += svar(v - popt[k])
                popt[k] = v
        pts, plat, plon, plag = ts, lat, lon, lag
    return out


fleet = [(NOW + i * 1000, 129716000 + i * 700, 775946000 - i * 30, 800 + i, 9000, 50 + i % 7, (NOW + i * 1000) * 1000 + 250000)
         for i in range(40)]
write("fuzz_segment", "courier", segment(fleet))
write("fuzz_segment", "parked", segment([(NOW + i * 2000, 1, -1, -1, -1, -1, (NOW + i * 2000) * 1000) for i in range(30)], 0))
write("fuzz_segment", "extremes", segment([(-62135596800000, -900000000, -1800000000, 0, 0, 0, -62135596800000000),
                                           (253402300799999, 900000000, 1800000000, 65534, 35999, 65534, 253402300799999000)]))
