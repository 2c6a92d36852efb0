#include "mqtt.hpp"

namespace lt::mqtt {
namespace {

void put_u16(std::string &o, uint16_t v) {
	o += char(v >> 8);
	o += char(v & 0xFF);
}

void put_u32(std::string &o, uint32_t v) {
	for (int i = 3; i >= 0; i--)
		o += char((v >> (8 * i)) & 0xFF);
}

void put_str(std::string &o, std::string_view s) {
	put_u16(o, uint16_t(s.size()));
	o += s;
}

void put_varint(std::string &o, size_t v) {
	do {
		uint8_t b = v % 128;
		v /= 128;
		if (v > 0)
			b |= 0x80;
		o += char(b);
	} while (v > 0);
}

std::string packet(uint8_t first, const std::string &body) {
	std::string o(1, char(first));
	put_varint(o, body.size());
	return o + body;
}

// What a v5 property carries, by id (MQTT 5.0 2.2.2.2); 0: unknown.
enum PropType : uint8_t { kUnknown, kByte, kTwo, kFour, kVarint, kUtf8, kBinary, kPair };
PropType prop_type(uint8_t id) {
	switch (id) {
	case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2A: return kByte;
	case 0x13: case 0x21: case 0x22: case 0x23: return kTwo;
	case 0x02: case 0x11: case 0x18: case 0x27: return kFour;
	case 0x0B: return kVarint;
	case 0x03: case 0x08: case 0x12: case 0x15: case 0x1A: case 0x1C: case 0x1F: return kUtf8;
	case 0x09: case 0x16: return kBinary;
	case 0x26: return kPair;
	}
	return kUnknown;
}

// A variable byte integer (1 to 4 bytes, minimal); false if malformed or short.
bool read_varint(const uint8_t *&p, const uint8_t *end, size_t &out, bool &need_more) {
	size_t v = 0, mul = 1;
	need_more = false;
	for (int i = 0; i < 4; i++) {
		if (p >= end) {
			need_more = true;
			return false;
		}
		uint8_t b = *p++;
		v += size_t(b & 0x7F) * mul;
		if (!(b & 0x80)) {
			if (i > 0 && b == 0)
				return false; // not the shortest encoding
			out = v;
			return true;
		}
		mul *= 128;
	}
	return false; // a fifth byte
}

bool read_u16(const uint8_t *&p, const uint8_t *end, uint16_t &v) {
	if (end - p < 2)
		return false;
	v = uint16_t(p[0] << 8 | p[1]);
	p += 2;
	return true;
}

bool read_str(const uint8_t *&p, const uint8_t *end, std::string_view &s) {
	uint16_t n;
	if (!read_u16(p, end, n) || size_t(end - p) < n)
		return false;
	s = std::string_view(reinterpret_cast<const char *>(p), n);
	p += n;
	return true;
}

} // namespace

bool valid_utf8(std::string_view s) {
	const auto *p = reinterpret_cast<const uint8_t *>(s.data());
	size_t n = s.size();
	for (size_t i = 0; i < n;) {
		uint8_t c = p[i];
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		int len;
		uint32_t cp;
		if ((c & 0xE0) == 0xC0) {
			len = 2;
			cp = c & 0x1F;
		} else if ((c & 0xF0) == 0xE0) {
			len = 3;
			cp = c & 0x0F;
		} else if ((c & 0xF8) == 0xF0) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (i + size_t(len) > n)
			return false;
		for (int k = 1; k < len; k++) {
			if ((p[i + size_t(k)] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + size_t(k)] & 0x3F);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += size_t(len);
	}
	return true;
}

std::string encode_connect(const ConnectOptions &o) {
	std::string b;
	put_str(b, "MQTT");
	b += char(uint8_t(o.version));
	uint8_t flags = 0;
	if (!o.username.empty())
		flags |= 0x80;
	if (!o.password.empty())
		flags |= 0x40 | (o.version == Version::V311 ? 0x80 : 0); // 3.1.1: no password without a user
	if (o.clean_start)
		flags |= 0x02;
	b += char(flags);
	put_u16(b, o.keepalive_s);
	if (o.version == Version::V5) {
		std::string props;
		if (o.session_expiry_s) {
			props += char(0x11);
			put_u32(props, o.session_expiry_s);
		}
		if (o.receive_maximum) {
			props += char(0x21);
			put_u16(props, o.receive_maximum);
		}
		if (o.maximum_packet_size) {
			props += char(0x27);
			put_u32(props, o.maximum_packet_size);
		}
		put_varint(b, props.size());
		b += props;
	}
	put_str(b, o.client_id);
	if (flags & 0x80)
		put_str(b, o.username);
	if (flags & 0x40)
		put_str(b, o.password);
	return packet(0x10, b);
}

std::string encode_subscribe(Version v, uint16_t packet_id, const std::vector<std::string> &filters, uint8_t qos) {
	std::string b;
	put_u16(b, packet_id);
	if (v == Version::V5)
		b += char(0); // no properties
	for (const std::string &f : filters) {
		put_str(b, f);
		// v5: retain handling 2, retained messages are not sent on subscribe
		// (old fixes, and every resubscription would send them again).
		b += char(v == Version::V5 ? (qos | 0x20) : qos);
	}
	return packet(0x82, b);
}

std::string encode_unsubscribe(Version v, uint16_t packet_id, const std::vector<std::string> &filters) {
	std::string b;
	put_u16(b, packet_id);
	if (v == Version::V5)
		b += char(0);
	for (const std::string &f : filters)
		put_str(b, f);
	return packet(0xA2, b);
}

bool topic_matches(std::string_view filter, std::string_view topic) {
	if (!topic.empty() && topic[0] == '$' && !filter.empty() && (filter[0] == '+' || filter[0] == '#'))
		return false;
	size_t f = 0, t = 0;
	for (;;) {
		size_t fe = filter.find('/', f), te = topic.find('/', t);
		std::string_view fl = filter.substr(f, fe == std::string_view::npos ? std::string_view::npos : fe - f);
		if (fl == "#")
			return true; // the rest, the parent level included ("a/#" matches "a")
		if (t > topic.size())
			return false; // the topic ended before the filter
		std::string_view tl = topic.substr(t, te == std::string_view::npos ? std::string_view::npos : te - t);
		if (fl != "+" && fl != tl)
			return false;
		if (fe == std::string_view::npos)
			return te == std::string_view::npos;
		f = fe + 1;
		t = te == std::string_view::npos ? topic.size() + 1 : te + 1;
	}
}

std::string encode_puback(uint16_t packet_id) {
	std::string b;
	put_u16(b, packet_id);
	return packet(0x40, b);
}

std::string encode_pingreq() { return std::string("\xC0\x00", 2); }

std::string encode_disconnect(Version) { return std::string("\xE0\x00", 2); }

std::string encode_publish(Version v, std::string_view topic, std::string_view payload, uint8_t qos,
                           uint16_t packet_id) {
	std::string b;
	put_str(b, topic);
	if (qos > 0)
		put_u16(b, packet_id);
	if (v == Version::V5)
		b += char(0);
	b += payload;
	return packet(uint8_t(0x30 | (qos << 1)), b);
}

Decoder::Status Decoder::next(const uint8_t *p, size_t n, size_t *consumed, Packet &out) {
	*consumed = 0;
	if (n < 2)
		return Status::NeedMore;
	const uint8_t *q = p + 1, *end = p + n;
	size_t len = 0;
	bool need_more = false;
	if (!read_varint(q, end, len, need_more))
		return need_more ? Status::NeedMore : fail("malformed remaining length");
	size_t header = size_t(q - p);
	if (len > max_) {
		if ((p[0] >> 4) != kPublish)
			return fail("packet too large");
		// Enough of it for the topic and packet id (at most 64 KB in).
		const uint8_t *b = p + header, *e = p + n;
		out = Packet{};
		out.type = kPublish;
		out.qos = (p[0] >> 1) & 3;
		if (out.qos > 1)
			return fail("PUBLISH QoS above 1");
		if (!read_str(b, e, out.topic) || (out.qos == 1 && !read_u16(b, e, out.packet_id)))
			return n - header < 65536 + 4 ? Status::NeedMore : fail("PUBLISH topic");
		if (out.qos == 1 && out.packet_id == 0)
			return fail("PUBLISH packet id");
		if (out.topic.empty() || !valid_utf8(out.topic) || out.topic.find_first_of("+#") != std::string_view::npos)
			return fail("PUBLISH topic name");
		skip_ = header + len;
		return Status::Skip;
	}
	if (n - header < len)
		return Status::NeedMore;
	out = Packet{};
	Status st = decode(p[0], q, len, out);
	if (st == Status::Packet)
		*consumed = header + len;
	return st;
}

Decoder::Status Decoder::properties(const uint8_t *&p, const uint8_t *end, uint8_t type, Packet &out) {
	size_t len = 0;
	bool need_more;
	if (!read_varint(p, end, len, need_more) || size_t(end - p) < len)
		return fail("malformed properties length");
	const uint8_t *pe = p + len;
	uint64_t seen = 0; // property ids seen (all are below 64)
	while (p < pe) {
		uint8_t id = *p++;
		PropType t = prop_type(id);
		if (t == kUnknown)
			return fail("unknown property");
		// Only user properties and subscription identifiers may repeat.
		if (id != 0x26 && id != 0x0B) {
			if (seen & (uint64_t(1) << id))
				return fail("repeated property");
			seen |= uint64_t(1) << id;
		}
		uint16_t u16;
		std::string_view sv;
		size_t vi;
		switch (t) {
		case kByte:
			if (p >= pe)
				return fail("short property");
			if (id == 0x24)
				out.maximum_qos = *p;
			p++;
			break;
		case kTwo:
			if (!read_u16(p, pe, u16))
				return fail("short property");
			if (id == 0x21) {
				if (u16 == 0)
					return fail("receive maximum 0");
				out.receive_maximum = u16;
			} else if (id == 0x13) {
				out.server_keepalive = u16;
			} else if (id == 0x23 && type == kPublish) {
				return fail("a topic alias we did not allow");
			}
			break;
		case kFour:
			if (pe - p < 4)
				return fail("short property");
			p += 4;
			break;
		case kVarint:
			if (!read_varint(p, pe, vi, need_more))
				return fail("short property");
			break;
		case kUtf8:
			if (!read_str(p, pe, sv) || !valid_utf8(sv))
				return fail("bad string property");
			break;
		case kBinary:
			if (!read_str(p, pe, sv))
				return fail("short property");
			break;
		case kPair:
			if (!read_str(p, pe, sv) || !valid_utf8(sv) || !read_str(p, pe, sv) || !valid_utf8(sv))
				return fail("bad user property");
			break;
		case kUnknown: break;
		}
	}
	if (p != pe)
		return fail("properties overrun");
	return Status::Packet;
}

Decoder::Status Decoder::decode(uint8_t b0, const uint8_t *body, size_t len, Packet &out) {
	const uint8_t *p = body, *end = body + len;
	out.type = b0 >> 4;
	out.flags = b0 & 0x0F;
	bool v5 = v_ == Version::V5;
	switch (out.type) {
	case kConnack: {
		if (out.flags != 0)
			return fail("CONNACK flags");
		if (len < 2 || (!v5 && len != 2))
			return fail("CONNACK length");
		if (p[0] & 0xFE)
			return fail("CONNACK reserved bits");
		out.session_present = p[0] & 1;
		out.reason = p[1];
		if (out.reason != 0 && out.session_present)
			return fail("CONNACK: session present with an error");
		p += 2;
		if (v5 && len == 2) {
			out.short_connack = true; // a 3.1.1 broker answering our v5 CONNECT
			return Status::Packet;
		}
		if (v5)
			return properties(p, end, kConnack, out) == Status::Packet && p == end ? Status::Packet
			                                                                        : fail("CONNACK properties");
		return Status::Packet;
	}
	case kPublish: {
		out.qos = (out.flags >> 1) & 3;
		out.dup = out.flags & 8;
		out.retain = out.flags & 1;
		if (out.qos > 1)
			return fail("PUBLISH QoS above 1"); // we subscribe at 1: a broker may not send 2
		if (out.qos == 0 && out.dup)
			return fail("PUBLISH QoS 0 with DUP");
		if (!read_str(p, end, out.topic))
			return fail("PUBLISH topic");
		if (out.topic.empty() || !valid_utf8(out.topic) || out.topic.find_first_of("+#") != std::string_view::npos)
			return fail("PUBLISH topic name");
		if (out.qos > 0 && (!read_u16(p, end, out.packet_id) || out.packet_id == 0))
			return fail("PUBLISH packet id");
		if (v5 && properties(p, end, kPublish, out) != Status::Packet)
			return Status::Error;
		out.payload = std::string_view(reinterpret_cast<const char *>(p), size_t(end - p));
		return Status::Packet;
	}
	case kPuback: {
		if (out.flags != 0 || len < 2)
			return fail("PUBACK");
		read_u16(p, end, out.packet_id);
		if (out.packet_id == 0 || (!v5 && len != 2))
			return fail("PUBACK");
		if (p < end)
			out.reason = *p++;
		if (p < end && properties(p, end, kPuback, out) != Status::Packet)
			return Status::Error;
		return p == end ? Status::Packet : fail("PUBACK length");
	}
	case kSuback: {
		if (out.flags != 0 || !read_u16(p, end, out.packet_id) || out.packet_id == 0)
			return fail("SUBACK");
		if (v5 && properties(p, end, kSuback, out) != Status::Packet)
			return Status::Error;
		if (p == end)
			return fail("SUBACK without codes");
		for (; p < end; p++) {
			if (!v5 && *p > 2 && *p != 0x80)
				return fail("SUBACK code");
			out.codes.push_back(*p);
		}
		return Status::Packet;
	}
	case kUnsuback:
		if (out.flags != 0)
			return fail("UNSUBACK");
		return Status::Packet;
	case kPingresp:
		return out.flags == 0 && len == 0 ? Status::Packet : fail("PINGRESP");
	case kDisconnect: {
		if (!v5)
			return fail("a 3.1.1 server sends no DISCONNECT");
		if (out.flags != 0)
			return fail("DISCONNECT flags");
		if (p < end)
			out.reason = *p++;
		if (p < end && properties(p, end, kDisconnect, out) != Status::Packet)
			return Status::Error;
		return p == end ? Status::Packet : fail("DISCONNECT length");
	}
	default:
		// CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ come from clients; QoS 2
		// (PUBREC, PUBREL, PUBCOMP) and AUTH were never asked for.
		return fail("a packet a server does not send here");
	}
}

} // namespace lt::mqtt
