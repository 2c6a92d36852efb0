#include "http_ingest.hpp"

#include <cmath>
#include <cstring>

#include "json_lines.hpp"
#include "rj.hpp"
#include "wire.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace lt::http {
namespace {

constexpr double kKnotMps = 0.514444; // OsmAnd speeds are knots
constexpr double kKmhMps = 1 / 3.6;   // OwnTracks' vel is km/h

bool starts_with_ci(std::string_view s, std::string_view prefix) {
	if (s.size() < prefix.size())
		return false;
	for (size_t i = 0; i < prefix.size(); i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = char(c - 'A' + 'a');
		if (c != prefix[i])
			return false;
	}
	return true;
}

std::string_view skip_space(std::string_view s) {
	while (!s.empty() && (s[0] == ' ' || s[0] == '\t' || s[0] == '\r' || s[0] == '\n'))
		s.remove_prefix(1);
	return s;
}

void add(IngestResult &out, Reject r, const Fix &f) {
	out.verdict.push_back(r);
	if (r == Reject::None)
		out.fixes.push_back(f);
}

// The checks every posted fix gets after it is decoded: who may send it,
// then SPEC 2.4.
Reject judge(const Fix &f, const Poster &who, const Policy &p, int64_t now_ms) {
	if (!who.unsigned_ok)
		return Reject::Auth;
	Reject r = validate_fix(f, now_ms, p.clock);
	if (r != Reject::None)
		return r;
	if (who.only_driver != 0 && f.driver_id != who.only_driver)
		return Reject::Auth;
	return Reject::None;
}

void json_line(std::string_view line, const Poster &who, const Policy &p, int64_t now_ms, IngestResult &out,
               uint64_t default_driver = 0) {
	out.messages++;
	Fix f{};
	// The device port's line limit, so a line means the same everywhere.
	Reject r = line.size() > 16383 ? Reject::Malformed
	                               : json::parse_line(line.data(), line.size(), now_ms, f, default_driver);
	if (r == Reject::None)
		r = judge(f, who, p, now_ms);
	add(out, r, f);
}

void json_lines(std::string_view body, const Poster &who, const Policy &p, int64_t now_ms, IngestResult &out) {
	size_t off = 0;
	while (off < body.size()) {
		size_t nl = body.find('\n', off);
		size_t end = nl == std::string_view::npos ? body.size() : nl;
		std::string_view line = body.substr(off, end - off);
		if (!line.empty() && line.back() == '\r')
			line.remove_suffix(1);
		if (!skip_space(line).empty())
			json_line(line, who, p, now_ms, out);
		off = end + 1;
	}
}

void json_array(std::string_view body, const Poster &who, const Policy &p, int64_t now_ms, IngestResult &out) {
	rapidjson::Document doc;
	if (!rj::parse(doc, body.data(), body.size()) || !doc.IsArray()) {
		out.bad_body = "the body is not a valid JSON array";
		return;
	}
	// Each element goes through the same line parser as JSON lines.
	for (const auto &v : doc.GetArray()) {
		rapidjson::StringBuffer sb;
		rapidjson::Writer<rapidjson::StringBuffer> w(sb);
		v.Accept(w);
		json_line(std::string_view(sb.GetString(), sb.GetSize()), who, p, now_ms, out);
	}
}

void binary(std::string_view body, const Poster &who, const Policy &policy, int64_t now_ms, KeyStore *keys,
            IngestResult &out) {
	// Signed messages are judged as on the device port; unsigned ones are
	// allowed exactly when `who` may post unsigned fixes.
	Policy p = policy;
	if (p.auth != AuthMode::Off)
		p.auth = AuthMode::LoopbackTrust;
	const uint8_t *b = reinterpret_cast<const uint8_t *>(body.data());
	size_t off = 0;
	MessageVerdict v;
	while (off < body.size()) {
		wire::Header h;
		size_t frame_len = 0;
		if (wire::parse_header(b + off, body.size() - off, h, frame_len) != wire::Parse::Ok ||
		    frame_len > body.size() - off) {
			// No frame boundary to go on from: what follows is unread.
			out.messages++;
			out.verdict.push_back(Reject::Malformed);
			out.truncated = true;
			return;
		}
		out.messages++;
		judge_message(b + off, h, who.unsigned_ok, p, now_ms, v, keys);
		for (uint16_t i = 0; i < v.count; i++) {
			Reject r = v.record[i];
			// A device token vouches for its driver only (a signed message
			// from a gateway key may carry any driver).
			if (r == Reject::None && (!h.is_signed() || who.signed_too) && who.only_driver != 0 &&
			    v.fix[i].driver_id != who.only_driver)
				r = Reject::Auth;
			add(out, r, v.fix[i]);
		}
		off += frame_len;
	}
}

// Digits only, 1 .. 2^63-1; 0 otherwise.
uint64_t driver_of(std::string_view s) {
	if (s.empty() || s.size() > 19)
		return 0;
	uint64_t v = 0;
	for (char c : s) {
		if (c < '0' || c > '9')
			return 0;
		v = v * 10 + uint64_t(c - '0');
	}
	return v < (uint64_t(1) << 63) ? v : 0;
}

bool number(std::string_view s, double &out) {
	if (s.empty() || s.size() > 64)
		return false;
	std::string t(s);
	char *end = nullptr;
	out = std::strtod(t.c_str(), &end);
	return end == t.c_str() + t.size() && std::isfinite(out);
}

// Scales to a uint16 wire unit: negative (apps send -1 for unknown) or
// absent is unknown; too large is out of range.
bool scaled(double v, double scale, double max, uint16_t &out) {
	if (!(v >= 0)) {
		out = kUnknown16;
		return true;
	}
	double u = std::nearbyint(v * scale);
	if (u > max)
		return false;
	out = uint16_t(u);
	return true;
}

uint16_t heading_cd(double deg, bool &range) {
	if (!(deg >= 0))
		return kUnknown16;
	double u = std::nearbyint(deg * 100);
	if (u >= 36000 && deg < 360)
		u = 0; // rounds to 360: north
	if (u > kMaxHeadingCd) {
		range = true;
		return kUnknown16;
	}
	return uint16_t(u);
}

// OsmAnd timestamps: digits are seconds (or milliseconds from 2^31 on,
// as Traccar reads them), anything else ISO 8601 ("2016-01-27T18:55:47Z",
// "2014-06-04 09:10:11"; no zone is UTC).
bool osmand_time(std::string_view s, int64_t &ms) {
	bool digits = !s.empty() && s.size() <= 16;
	for (char c : s)
		digits = digits && c >= '0' && c <= '9';
	if (digits) {
		int64_t v = std::stoll(std::string(s));
		ms = v < 2147483647 ? v * 1000 : v;
		return true;
	}
	return json::parse_iso8601_ms(s.data(), s.size(), ms);
}

void finish(IngestResult &out, Fix f, bool range, const Poster &who, const Policy &p, int64_t now_ms) {
	out.messages++;
	if (f.driver_id == 0 && who.only_driver != 0)
		f.driver_id = who.only_driver; // the app named no device: the token's driver
	Reject r = range ? Reject::Range : judge(f, who, p, now_ms);
	add(out, r, f);
}

void set_lat_lon(Fix &f, double lat, double lon, bool &range) {
	if (!(std::fabs(lat) <= 90 && std::fabs(lon) <= 180)) {
		range = true;
		return;
	}
	f.lat_e7 = int32_t(std::llround(lat * 1e7));
	f.lon_e7 = int32_t(std::llround(lon * 1e7));
}

Fix blank(int64_t now_ms) {
	Fix f{};
	f.ts_ms = now_ms;
	f.speed_cms = f.heading_cd = f.accuracy_dm = kUnknown16;
	return f;
}

// The OsmAnd protocol, from a query string or a form (Traccar Client).
void osmand_form(const std::vector<std::pair<std::string, std::string>> &q, const Poster &who, const Policy &p,
                 int64_t now_ms, IngestResult &out) {
	const std::string *lat = form_value(q, "lat"), *lon = form_value(q, "lon"), *loc = form_value(q, "location");
	if ((lat == nullptr || lon == nullptr) && loc == nullptr)
		return; // no position (a push-notification token, cell towers only): nothing to store
	Fix f = blank(now_ms);
	bool range = false, bad = false;
	const std::string *id = form_value(q, "id");
	if (id == nullptr)
		id = form_value(q, "deviceid");
	if (id != nullptr && (f.driver_id = driver_of(*id)) == 0)
		range = true;
	double la = 0, lo = 0;
	if (lat != nullptr && lon != nullptr) {
		bad = !number(*lat, la) || !number(*lon, lo);
	} else {
		size_t comma = loc->find(',');
		bad = comma == std::string::npos || !number(loc->substr(0, comma), la) || !number(loc->substr(comma + 1), lo);
	}
	if (!bad)
		set_lat_lon(f, la, lo, range);
	if (const std::string *t = form_value(q, "timestamp"))
		bad = bad || !osmand_time(*t, f.ts_ms);
	double v;
	if (const std::string *s = form_value(q, "speed"))
		bad = bad || !number(*s, v) || !scaled(v * kKnotMps, 100, 65534, f.speed_cms);
	const std::string *b = form_value(q, "bearing");
	if (b == nullptr)
		b = form_value(q, "heading");
	if (b != nullptr) {
		if (!number(*b, v))
			bad = true;
		else
			f.heading_cd = heading_cd(v, range);
	}
	if (const std::string *a = form_value(q, "accuracy"))
		bad = bad || !number(*a, v) || !scaled(v, 10, 65534, f.accuracy_dm);
	if (bad) {
		out.messages++;
		add(out, Reject::Malformed, f);
		return;
	}
	finish(out, f, range, who, p, now_ms);
}

double num_or(const rapidjson::Value &o, const char *k, double dflt) {
	auto it = o.FindMember(k);
	return it != o.MemberEnd() && it->value.IsNumber() ? it->value.GetDouble() : dflt;
}

// OwnTracks: {"_type":"location","lat":..,"lon":..,"tst":s,"vel":km/h,"cog":deg,"acc":m,"topic":"owntracks/u/42"}.
// `device`: the driver named outside the object (X-Limit-D, an MQTT topic), or empty.
void owntracks(const rapidjson::Value &o, std::string device, const Poster &who, const Policy &p, int64_t now_ms,
               IngestResult &out) {
	auto type = o.FindMember("_type");
	if (!type->value.IsString() || std::strcmp(type->value.GetString(), "location") != 0)
		return; // transitions, waypoints, cards...: valid, not fixes
	Fix f = blank(now_ms);
	bool range = false;
	auto topic = o.FindMember("topic");
	if (topic != o.MemberEnd() && topic->value.IsString()) {
		std::string_view t(topic->value.GetString(), topic->value.GetStringLength());
		size_t slash = t.rfind('/');
		device = std::string(slash == std::string_view::npos ? t : t.substr(slash + 1));
	}
	if (!device.empty() && (f.driver_id = driver_of(device)) == 0)
		range = true;
	auto lat = o.FindMember("lat"), lon = o.FindMember("lon");
	if (lat == o.MemberEnd() || lon == o.MemberEnd() || !lat->value.IsNumber() || !lon->value.IsNumber()) {
		out.messages++;
		add(out, Reject::Malformed, f);
		return;
	}
	set_lat_lon(f, lat->value.GetDouble(), lon->value.GetDouble(), range);
	double tst = num_or(o, "tst", -1);
	if (tst >= 0 && tst < 1e13)
		f.ts_ms = int64_t(tst) * 1000;
	if (!scaled(num_or(o, "vel", -1) * kKmhMps, 100, 65534, f.speed_cms))
		range = true;
	f.heading_cd = heading_cd(num_or(o, "cog", -1), range);
	if (!scaled(num_or(o, "acc", -1), 10, 65534, f.accuracy_dm))
		range = true;
	finish(out, f, range, who, p, now_ms);
}

// Traccar Client's JSON: {"location":{"timestamp":ISO,"coords":{...}},"device_id":"..."}.
void traccar_json(const rapidjson::Value &o, const Poster &who, const Policy &p, int64_t now_ms, IngestResult &out) {
	Fix f = blank(now_ms);
	bool range = false;
	auto dev = o.FindMember("device_id");
	if (dev != o.MemberEnd()) {
		std::string id = dev->value.IsString() ? dev->value.GetString()
		                 : dev->value.IsUint64() ? std::to_string(dev->value.GetUint64())
		                                         : std::string("x");
		if ((f.driver_id = driver_of(id)) == 0)
			range = true;
	}
	const rapidjson::Value &loc = o["location"];
	// Every member lookup below is on a value known to be an object:
	// RapidJSON asserts otherwise (the fuzzer found "location": 122.1).
	bool ok = loc.IsObject() && loc.HasMember("coords") && loc["coords"].IsObject();
	if (ok) {
		const rapidjson::Value &c = loc["coords"];
		ok = c.HasMember("latitude") && c.HasMember("longitude") && c["latitude"].IsNumber() &&
		     c["longitude"].IsNumber();
	}
	if (!ok) {
		out.messages++;
		add(out, Reject::Malformed, f);
		return;
	}
	const rapidjson::Value &c = loc["coords"];
	set_lat_lon(f, c["latitude"].GetDouble(), c["longitude"].GetDouble(), range);
	auto ts = loc.FindMember("timestamp");
	if (ts != loc.MemberEnd()) {
		if (!ts->value.IsString() || !json::parse_iso8601_ms(ts->value.GetString(), ts->value.GetStringLength(), f.ts_ms)) {
			out.messages++;
			add(out, Reject::Malformed, f);
			return;
		}
	}
	// -1 is "unknown" for speed (m/s) and heading.
	if (!scaled(num_or(c, "speed", -1), 100, 65534, f.speed_cms))
		range = true;
	f.heading_cd = heading_cd(num_or(c, "heading", -1), range);
	if (!scaled(num_or(c, "accuracy", -1), 10, 65534, f.accuracy_dm))
		range = true;
	finish(out, f, range, who, p, now_ms);
}

} // namespace

void parse_pings(std::string_view content_type, std::string_view body, const Poster &who, const Policy &policy,
                 int64_t now_ms, KeyStore *keys, IngestResult &out) {
	std::string_view start = skip_space(body);
	if (start.empty()) {
		out.bad_body = "the body is empty";
		return;
	}
	if (starts_with_ci(content_type, "application/octet-stream") || (body.size() >= 2 && body[0] == 'L' && body[1] == 'T'))
		binary(body, who, policy, now_ms, keys, out);
	else if (start[0] == '[')
		json_array(start, who, policy, now_ms, out);
	else
		json_lines(body, who, policy, now_ms, out);
}

void parse_osmand(const Request &req, const std::vector<std::pair<std::string, std::string>> &query,
                  const Poster &who, const Policy &policy, int64_t now_ms, IngestResult &out) {
	const std::string *ct = req.header("content-type");
	if (ct != nullptr && starts_with_ci(*ct, "application/json")) {
		std::string_view b = skip_space(req.body);
		if (b.empty())
			return; // OwnTracks posts empty bodies (a cleared contact)
		rapidjson::Document doc;
		if (!rj::parse(doc, b.data(), b.size()) || !doc.IsObject()) {
			out.bad_body = "the body is not a JSON object";
			return;
		}
		const std::string *limit_d = req.header("x-limit-d");
		if (doc.HasMember("_type"))
			owntracks(doc, limit_d ? *limit_d : std::string(), who, policy, now_ms, out);
		else if (doc.HasMember("location"))
			traccar_json(doc, who, policy, now_ms, out);
		else
			out.bad_body = "neither a Traccar Client nor an OwnTracks location";
		return;
	}
	if (!query.empty() && (form_value(query, "lat") || form_value(query, "location") || form_value(query, "id") ||
	                       form_value(query, "deviceid")))
		osmand_form(query, who, policy, now_ms, out);
	else
		osmand_form(parse_form(req.body), who, policy, now_ms, out);
}

void parse_mqtt(std::string_view topic, std::string_view payload, const Policy &policy, int64_t now_ms,
                KeyStore *keys, IngestResult &out) {
	size_t slash = topic.rfind('/');
	Poster who;
	who.only_driver = driver_of(slash == std::string_view::npos ? topic : topic.substr(slash + 1));
	who.signed_too = true;
	who.unsigned_ok = policy.auth != AuthMode::Required;
	if (who.only_driver == 0) {
		out.messages++;
		out.verdict.push_back(Reject::Malformed); // the topic names no driver
		return;
	}
	if (payload.size() >= 2 && payload[0] == 'L' && payload[1] == 'T') {
		binary(payload, who, policy, now_ms, keys, out);
		return;
	}
	std::string_view start = skip_space(payload);
	if (start.empty() || start[0] != '{') {
		out.messages++;
		out.verdict.push_back(Reject::Malformed);
		return;
	}
	// OwnTracks objects carry "_type"; ours do not. Look before parsing twice.
	if (start.find("\"_type\"") != std::string_view::npos) {
		rapidjson::Document doc;
		if (!rj::parse(doc, start.data(), start.size()) || !doc.IsObject()) {
			out.messages++;
			out.verdict.push_back(Reject::Malformed);
			return;
		}
		if (doc.HasMember("_type")) {
			// The topic names the driver, whatever a "topic" member says.
			if (doc.HasMember("topic"))
				doc.RemoveMember("topic");
			size_t before = out.verdict.size();
			owntracks(doc, std::string(topic.substr(slash + 1)), who, policy, now_ms, out);
			if (out.verdict.size() == before)
				out.messages++; // a valid OwnTracks message with no position (a transition, a card)
			return;
		}
	}
	json_line(start, who, policy, now_ms, out, who.only_driver);
}

std::string ingest_answer(const IngestResult &r) {
	size_t rejected = r.verdict.size() - r.fixes.size();
	std::string s = "{\"accepted\":" + std::to_string(r.fixes.size()) + ",\"rejected\":" + std::to_string(rejected) +
	                ",\"errors\":[";
	size_t listed = 0;
	for (size_t i = 0; i < r.verdict.size() && listed < 100; i++) {
		if (r.verdict[i] == Reject::None)
			continue;
		if (listed++)
			s += ',';
		s += "{\"index\":" + std::to_string(i + 1) + ",\"reason\":\"" + reject_name(r.verdict[i]) + "\"}";
	}
	s += "]";
	if (r.truncated)
		s += ",\"truncated\":true";
	s += "}";
	return s;
}

} // namespace lt::http
