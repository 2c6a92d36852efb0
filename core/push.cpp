#include "push.hpp"

#include <cstdio>

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

int format_position(char *out, size_t cap, const OrderWatch &w, const Fix &f, const PushDecision &d) {
	char ts[32];
	format_utc_ms(f.ts_ms, ts);
	return std::snprintf(out, cap,
	                     "{\"type\":\"position\",\"order_id\":%llu,\"driver_id\":%llu,\"status\":\"%s\","
	                     "\"lat\":%.7f,\"lon\":%.7f,\"ts\":\"%s\",\"distance_m\":%.1f,\"eta_s\":%.1f,"
	                     "\"target\":\"%s\"}",
	                     (unsigned long long)w.order_id, (unsigned long long)w.driver_id, target_status(w.target),
	                     f.lat_e7 / 1e7, f.lon_e7 / 1e7, ts, d.distance_m, d.eta_s, target_name(w.target));
}

} // namespace lt
