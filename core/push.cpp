#include "push.hpp"

#include <cstdio>
#include <cstring>

#include "geo.hpp"

namespace lt {

const char *target_name(uint8_t t) { return t == kTargetPickup ? "pickup" : "dropoff"; }
const char *target_status(uint8_t t) { return t == kTargetPickup ? "assigned" : "picked_up"; }

double eta_s(double distance_m, uint16_t speed_cms) {
	double v = speed_cms == kUnknown16 ? 0.0 : speed_cms / 100.0;
	return distance_m / (v > kEtaMinSpeedMps ? v : kEtaMinSpeedMps);
}

PushDecision watch_fix(OrderWatch &w, const Fix &f, bool late, uint64_t batch, int64_t now_us,
                       int64_t interval_us, double near_radius_m) {
	PushDecision d{};
	if (late)
		return d;
	d.distance_m = geo::geodesic_m(f.lat_e7 / 1e7, f.lon_e7 / 1e7, w.target_lat, w.target_lon);
	d.eta_s = eta_s(d.distance_m, f.speed_cms);
	if (w.batch != batch) {
		w.batch = batch;
		if (w.last_position_us == 0 || now_us - w.last_position_us >= interval_us) {
			d.position = true;
			w.last_position_us = now_us;
		}
	}
	d.near = !w.near_sent && d.distance_m <= near_radius_m;
	return d;
}

void format_utc_ms(int64_t ms, char out[32]) {
	int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
	int64_t rem = ms - days * 86400000;
	// Civil date from days since 1970-01-01 (proleptic Gregorian).
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t day = doy - (153 * mp + 2) / 5 + 1;
	int64_t month = mp < 10 ? mp + 3 : mp - 9;
	int64_t year = yoe + era * 400 + (month <= 2);
	// The modulos only tell the compiler the widths (the values are in range).
	std::snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", unsigned(year) % 10000u, unsigned(month) % 100u,
	              unsigned(day) % 100u, unsigned(rem / 3600000) % 100u, unsigned(rem / 60000 % 60),
	              unsigned(rem / 1000 % 60), unsigned(rem % 1000));
}

namespace {

void key(std::string &out, const char *k) {
	if (out.size() > 1)
		out += ", ";
	out += '"';
	out += k;
	out += "\": ";
}

void num(std::string &out, const char *fmt, double v) {
	char b[40];
	std::snprintf(b, sizeof b, fmt, v);
	// No "-0.0" for a value that rounds to zero: numeric, behind jsonb, has
	// no negative zero and would print "0.0".
	const char *p = b;
	if (*p == '-' && std::strspn(p + 1, "0.") == std::strlen(p + 1))
		p++;
	out += p;
}

void str(std::string &out, const char *s) {
	if (s == nullptr) {
		out += "null";
		return;
	}
	out += '"';
	out += s; // our own words only: types, statuses, targets, timestamps
	out += '"';
}

} // namespace

std::string format_order_message(const OrderMessage &m) {
	std::string out;
	out.reserve(256);
	out += '{';
	// jsonb's order: by length, then bytewise.
	char ts[32];
	format_utc_ms(m.ts_ms, ts);
	key(out, "ts");
	str(out, ts);
	key(out, "lat");
	m.has_position ? num(out, "%.7f", m.lat) : void(out += "null");
	key(out, "lon");
	m.has_position ? num(out, "%.7f", m.lon) : void(out += "null");
	key(out, "type");
	str(out, m.type);
	key(out, "eta_s");
	m.has_distance ? num(out, "%.1f", m.eta_s) : void(out += "null");
	key(out, "status");
	str(out, m.status);
	key(out, "target");
	str(out, m.target);
	if (m.event_id != 0) {
		key(out, "event_id");
		out += std::to_string(m.event_id);
	}
	key(out, "order_id");
	out += std::to_string(m.order_id);
	key(out, "driver_id");
	m.driver_id != 0 ? void(out += std::to_string(m.driver_id)) : void(out += "null");
	key(out, "distance_m");
	m.has_distance ? num(out, "%.1f", m.distance_m) : void(out += "null");
	out += '}';
	return out;
}

bool format_order_message(char *out, size_t cap, const OrderMessage &m) {
	std::string s = format_order_message(m);
	if (s.size() + 1 > cap)
		return false;
	std::memcpy(out, s.c_str(), s.size() + 1);
	return true;
}

OrderMessage position_message(const OrderWatch &w, const Fix &f, const PushDecision &d) {
	OrderMessage m;
	m.type = "position";
	m.order_id = w.order_id;
	m.driver_id = w.driver_id;
	m.status = target_status(w.target);
	m.has_position = true;
	m.lat = f.lat_e7 / 1e7;
	m.lon = f.lon_e7 / 1e7;
	m.ts_ms = f.ts_ms;
	m.target = target_name(w.target);
	m.has_distance = true;
	m.distance_m = d.distance_m;
	m.eta_s = d.eta_s;
	return m;
}

} // namespace lt
