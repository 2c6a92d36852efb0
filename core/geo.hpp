// Distances on the Earth.
//
// Results are geodesic distances on the WGS84 spheroid, as PostGIS's
// ST_Distance(geography) computes them. A sphere is not good enough for that:
// north-south near the equator it is 0.56 % long. The sphere (radius
// 6371008.8 m, PostGIS's mean radius) still serves as a cheap, conservative
// filter: the geodesic is never shorter than kSphereLowerRatio times the
// sphere distance, nor longer than kSphereUpperRatio times it.
#pragma once

#include <algorithm>
#include <cmath>

namespace lt::geo {

constexpr double kEarthRadiusM = 6371008.8;
constexpr double kPi = 3.14159265358979323846;
constexpr double kDegToRad = kPi / 180.0;

// Haversine in its atan2 form (accurate from millimetres to antipodes), from
// one point to many: the first point's cosine is computed once.
class SphereFrom {
public:
	SphereFrom(double lat, double lon) : p1_(lat * kDegToRad), lon_(lon), cos_p1_(std::cos(p1_)) {}

	double to(double lat2, double lon2) const {
		double p2 = lat2 * kDegToRad;
		double dlon = lon2 - lon_;
		if (std::fabs(dlon) > 180) // the short way round; also makes +180 and -180 one meridian
			dlon -= std::copysign(360.0, dlon);
		double sdlat = std::sin((p2 - p1_) / 2), sdlon = std::sin(dlon * kDegToRad / 2);
		double a = sdlat * sdlat + cos_p1_ * std::cos(p2) * sdlon * sdlon;
		a = std::min(1.0, std::max(0.0, a));
		return 2 * kEarthRadiusM * std::atan2(std::sqrt(a), std::sqrt(1 - a));
	}

private:
	double p1_, lon_, cos_p1_;
};

inline double distance_m(double lat1, double lon1, double lat2, double lon2) {
	return SphereFrom(lat1, lon1).to(lat2, lon2);
}

// b - a in degrees of longitude, normalised to [-180, 180).
inline double lon_diff(double a, double b) {
	double d = std::fmod(b - a + 540.0, 360.0);
	if (d < 0)
		d += 360.0;
	return d - 180.0;
}

// Smallest distance from (qlat, qlon) to any point of the lat/lon rectangle
// [lat0, lat1] x [lon0, lon1] (lon0 <= lon1, no wrap inside). Exact up to
// rounding: along a meridian at angular offset dl, the closest latitude
// maximises sin(pq) sin(p) + cos(pq) cos(p) cos(dl), a sinusoid in p, so the
// optimum is its crest when inside [lat0, lat1] and otherwise an end.
inline double rect_min_distance_m(double qlat, double qlon, double lat0, double lat1, double lon0, double lon1) {
	double d0 = lon_diff(qlon, lon0), d1 = lon_diff(qlon, lon1);
	bool inside_lon = d0 <= 0 && d1 >= 0 && (lon1 - lon0) < 360;
	if (inside_lon || lon1 - lon0 >= 360) {
		if (qlat >= lat0 && qlat <= lat1)
			return 0;
		double edge = qlat < lat0 ? lat0 : lat1;
		return std::fabs(qlat - edge) * kDegToRad * kEarthRadiusM;
	}
	double dl = std::fabs(d0) < std::fabs(d1) ? d0 : d1; // nearer edge meridian
	double pq = qlat * kDegToRad, cdl = std::cos(dl * kDegToRad);
	double crest = std::atan2(std::sin(pq), std::cos(pq) * cdl) / kDegToRad;
	double best = lat0, best_f = -2;
	double cands[3] = {lat0, lat1, std::min(lat1, std::max(lat0, crest))};
	for (double p : cands) {
		double pr = p * kDegToRad;
		double f = std::sin(pq) * std::sin(pr) + std::cos(pq) * std::cos(pr) * cdl;
		if (f > best_f) {
			best_f = f;
			best = p;
		}
	}
	return distance_m(qlat, qlon, best, qlon + dl);
}

// WGS84.
constexpr double kA = 6378137.0;
constexpr double kF = 1 / 298.257223563;
constexpr double kB = kA * (1 - kF);
// The ellipsoid's radii of curvature span [M(equator), N(pole)]
// = [6335439, 6399594] m, i.e. [0.99442, 1.00449] times the sphere's radius.
constexpr double kSphereLowerRatio = 0.994;
constexpr double kSphereUpperRatio = 1.005;

// Geodesic distances from one point (Vincenty's inverse method; agrees with
// Karney's algorithm, which PostGIS uses, to well under a millimetre). Near
// antipodal points, where it does not converge, it falls back to the sphere
// (within 0.5 %); no fleet query goes there.
class GeodesicFrom {
public:
	GeodesicFrom(double lat, double lon) : lon_(lon) { reduced(lat, sin_u1_, cos_u1_); }

	double to(double lat2, double lon2) const {
		double su2, cu2;
		reduced(lat2, su2, cu2);
		double l = lon2 - lon_;
		if (std::fabs(l) > 180)
			l -= std::copysign(360.0, l);
		l *= kDegToRad;
		double lambda = l, sin_sigma = 0, cos_sigma = 1, sigma = 0, cos2_alpha = 1, cos_2sm = 0;
		for (int iter = 0;; iter++) {
			double sl = std::sin(lambda), cl = std::cos(lambda);
			double t1 = cu2 * sl, t2 = cos_u1_ * su2 - sin_u1_ * cu2 * cl;
			sin_sigma = std::sqrt(t1 * t1 + t2 * t2);
			if (sin_sigma == 0)
				return 0; // same point
			cos_sigma = sin_u1_ * su2 + cos_u1_ * cu2 * cl;
			sigma = std::atan2(sin_sigma, cos_sigma);
			double sin_alpha = cos_u1_ * cu2 * sl / sin_sigma;
			cos2_alpha = 1 - sin_alpha * sin_alpha;
			cos_2sm = cos2_alpha != 0 ? cos_sigma - 2 * sin_u1_ * su2 / cos2_alpha : 0; // equatorial line
			double c = kF / 16 * cos2_alpha * (4 + kF * (4 - 3 * cos2_alpha));
			double prev = lambda;
			lambda = l + (1 - c) * kF * sin_alpha *
			                 (sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1 + 2 * cos_2sm * cos_2sm)));
			if (std::fabs(lambda - prev) < 1e-12)
				break;
			if (iter == 100 || std::fabs(lambda) > kPi)
				return distance_m(lat_deg(), lon_, lat2, lon2); // antipodal: sphere
		}
		double u2 = cos2_alpha * (kA * kA - kB * kB) / (kB * kB);
		double a = 1 + u2 / 16384 * (4096 + u2 * (-768 + u2 * (320 - 175 * u2)));
		double b = u2 / 1024 * (256 + u2 * (-128 + u2 * (74 - 47 * u2)));
		double d_sigma =
		    b * sin_sigma *
		    (cos_2sm + b / 4 *
		                   (cos_sigma * (-1 + 2 * cos_2sm * cos_2sm) -
		                    b / 6 * cos_2sm * (-3 + 4 * sin_sigma * sin_sigma) * (-3 + 4 * cos_2sm * cos_2sm)));
		return kB * a * (sigma - d_sigma);
	}

private:
	// Reduced latitude U, tan U = (1 - f) tan(lat), as sin and cos (no tan at the poles).
	static void reduced(double lat, double &su, double &cu) {
		double p = lat * kDegToRad, s = (1 - kF) * std::sin(p), c = std::cos(p), h = std::hypot(s, c);
		su = s / h;
		cu = c / h;
	}
	double lat_deg() const { return std::atan2(sin_u1_, (1 - kF) * cos_u1_) / kDegToRad; }

	double lon_;
	double sin_u1_, cos_u1_;
};

inline double geodesic_m(double lat1, double lon1, double lat2, double lon2) {
	return GeodesicFrom(lat1, lon1).to(lat2, lon2);
}

} // namespace lt::geo
