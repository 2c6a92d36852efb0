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
#include <cstdint>

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
// (within 0.5 %); no fleet query goes there. Within kChord of the point,
// where nearest-driver answers are, the chord does it five times faster.
class GeodesicFrom {
public:
	// Up to this far apart in latitude and longitude (11 km) the chord agrees
	// with Vincenty's method run to convergence within 2e-7 m (unit-tested);
	// by 0.3 degree the series' next term would show at 1e-6 m.
	static constexpr double kChordDeg = 0.1;

	GeodesicFrom(double lat, double lon) : lat_(lat), lon_(lon) {
		double p = lat * kDegToRad;
		sin_p1_ = std::sin(p);
		cos_p1_ = std::cos(p);
		reduced(sin_p1_, cos_p1_, sin_u1_, cos_u1_);
		double n1 = kA / std::sqrt(1 - kE2 * sin_p1_ * sin_p1_);
		x1_ = n1 * cos_p1_;
		z1_ = n1 * (1 - kE2) * sin_p1_;
	}

	double to(double lat2, double lon2) const {
		double l = lon_gap(lon2), d = (lat2 - lat_) * kDegToRad, su2, cu2;
		if (std::fabs(l) < kChord && std::fabs(d) < kChord)
			return chord(d, l);
		if (std::fabs(l) < kNear && std::fabs(d) < kNear) {
			// Nearby (the usual case): the same method with the sines and
			// cosines of small angles from their series, to double precision.
			double sd = sin_small(d), cd = cos_small(d);
			reduced(sin_p1_ * cd + cos_p1_ * sd, cos_p1_ * cd - sin_p1_ * sd, su2, cu2);
			return solve<true>(su2, cu2, l, lat2, lon2);
		}
		return to_libm(lat2, lon2);
	}
	// Vincenty with the library's sines and cosines at any distance, iterated
	// until longitude on the auxiliary sphere moves less than `tolerance`
	// radians (1e-12: 6 um on the ground).
	double to_libm(double lat2, double lon2, double tolerance = 1e-12) const {
		double p2 = lat2 * kDegToRad, su2, cu2;
		reduced(std::sin(p2), std::cos(p2), su2, cu2);
		return solve<false>(su2, cu2, lon_gap(lon2), lat2, lon2, tolerance);
	}

private:
	// Longitude from the origin, radians, the short way round.
	double lon_gap(double lon2) const {
		double l = lon2 - lon_;
		if (std::fabs(l) > 180)
			l -= std::copysign(360.0, l);
		return l * kDegToRad;
	}
	// Below this many radians the series of sin_small() and friends are exact
	// in double precision (the first term left out is under 1e-19 of the sum).
	static constexpr double kNear = 0.02;
	static constexpr double kChord = kChordDeg * kDegToRad;
	static constexpr double kE2 = kF * (2 - kF);

	// A short geodesic from the straight line between its ends. Both points
	// go to Earth-centred coordinates, x along the origin's meridian, so only
	// the offsets need sines. A geodesic bends with the surface's normal
	// curvature k in its direction (Euler: cos^2(az)/M + sin^2(az)/N), and a
	// curve of curvature k with chord c is c (1 + k^2 c^2 / 24) long, the next
	// term under 1e-9 m at 11 km. Over 11 km k changes by about 1e-5 of
	// itself, which moves the result by under 1e-7 m.
	double chord(double d, double l) const {
		double sd = sin_small(d), cd = cos_small(d);
		double sp2 = sin_p1_ * cd + cos_p1_ * sd, cp2 = cos_p1_ * cd - sin_p1_ * sd;
		double n2 = kA / std::sqrt(1 - kE2 * sp2 * sp2), r2 = n2 * cp2;
		double h = sin_small(l / 2);
		double dx = (r2 - x1_) - r2 * 2 * h * h, dy = r2 * sin_small(l), dz = n2 * (1 - kE2) * sp2 - z1_;
		double c2 = dx * dx + dy * dy + dz * dz;
		// Direction from the local north and east components; M and N at the
		// mid-latitude (near enough: k enters as a correction of ~1e-6).
		double north = cos_p1_ * dz - sin_p1_ * dx, nn = north * north, ee = dy * dy;
		double sm = (sin_p1_ + sp2) / 2, w2 = 1 - kE2 * sm * sm, w = std::sqrt(w2);
		double inv_m = w2 * w / (kA * (1 - kE2)), inv_n = w / kA;
		double k = nn + ee > 0 ? (nn * inv_m + ee * inv_n) / (nn + ee) : inv_m;
		return std::sqrt(c2) * (1 + k * k * c2 / 24);
	}
	static double sin_small(double x) {
		constexpr double c3 = 1.0 / 6, c5 = 1.0 / 120, c7 = 1.0 / 5040, c9 = 1.0 / 362880;
		double x2 = x * x;
		return x * (1 - x2 * (c3 - x2 * (c5 - x2 * (c7 - x2 * c9))));
	}
	static double cos_small(double x) {
		constexpr double c2 = 1.0 / 2, c4 = 1.0 / 24, c6 = 1.0 / 720, c8 = 1.0 / 40320, c10 = 1.0 / 3628800;
		double x2 = x * x;
		return 1 - x2 * (c2 - x2 * (c4 - x2 * (c6 - x2 * (c8 - x2 * c10))));
	}
	static double atan_small(double x) {
		constexpr double c3 = 1.0 / 3, c5 = 1.0 / 5, c7 = 1.0 / 7, c9 = 1.0 / 9, c11 = 1.0 / 11;
		double x2 = x * x;
		return x * (1 - x2 * (c3 - x2 * (c5 - x2 * (c7 - x2 * (c9 - x2 * c11)))));
	}

	template <bool Near>
	double solve(double su2, double cu2, double l, double lat2, double lon2, double tolerance = 1e-12) const {
		double lambda = l, sin_sigma = 0, cos_sigma = 1, sigma = 0, cos2_alpha = 1, cos_2sm = 0;
		for (int iter = 0;; iter++) {
			double sl, cl;
			if constexpr (Near) {
				sl = sin_small(lambda);
				cl = cos_small(lambda);
			} else {
				sl = std::sin(lambda);
				cl = std::cos(lambda);
			}
			double t1 = cu2 * sl, t2 = cos_u1_ * su2 - sin_u1_ * cu2 * cl;
			sin_sigma = std::sqrt(t1 * t1 + t2 * t2);
			if (sin_sigma == 0)
				return 0; // same point
			cos_sigma = sin_u1_ * su2 + cos_u1_ * cu2 * cl;
			if constexpr (Near)
				sigma = atan_small(sin_sigma / cos_sigma); // sigma < 2 kNear: cos_sigma is near 1
			else
				sigma = std::atan2(sin_sigma, cos_sigma);
			double sin_alpha = cos_u1_ * cu2 * sl / sin_sigma;
			cos2_alpha = 1 - sin_alpha * sin_alpha;
			cos_2sm = cos2_alpha != 0 ? cos_sigma - 2 * sin_u1_ * su2 / cos2_alpha : 0; // equatorial line
			double c = kF / 16 * cos2_alpha * (4 + kF * (4 - 3 * cos2_alpha));
			double prev = lambda;
			lambda = l + (1 - c) * kF * sin_alpha *
			                 (sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1 + 2 * cos_2sm * cos_2sm)));
			if (std::fabs(lambda - prev) < tolerance)
				break;
			if (iter == 100 || std::fabs(lambda) > kPi)
				return distance_m(lat_, lon_, lat2, lon2); // antipodal: sphere
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

	// Reduced latitude U, tan U = (1 - f) tan(lat), as sin and cos (no tan at
	// the poles), from the latitude's sine and cosine.
	static void reduced(double sin_p, double cos_p, double &su, double &cu) {
		double s = (1 - kF) * sin_p, h = std::sqrt(s * s + cos_p * cos_p);
		su = s / h;
		cu = cos_p / h;
	}

	double lat_, lon_;
	double sin_p1_, cos_p1_, sin_u1_, cos_u1_;
	double x1_, z1_; // the origin, Earth-centred, in its meridian's plane
};

inline double geodesic_m(double lat1, double lon1, double lat2, double lon2) {
	return GeodesicFrom(lat1, lon1).to(lat2, lon2);
}

// Short distances without trigonometry. Within a few kilometres of a point
// away from the poles the spheroid is flat enough for a plane whose scales
// are the radii of curvature there: metres north = M(lat) * dlat, metres east
// = N(lat) * cos(mid-latitude) * dlon, the cosine moved to the midpoint to
// first order. Inside kMaxOffsetDeg of the point and below kMaxLat it is
// within a few parts per million of the geodesic (unit-tested against
// GeodesicFrom); callers rely on kError and kSlackM, far wider.
// Offsets are in units of 1e-7 degree, as fixes carry them.
class LocalFrom {
public:
	static constexpr double kMaxLat = 80;
	static constexpr double kMaxOffsetDeg = 0.025;
	static constexpr double kError = 1e-4;
	static constexpr double kSlackM = 1e-3;

	LocalFrom(double lat, double lon) : lat7_(lat * 1e7), lon7_(lon * 1e7) {
		double p = lat * kDegToRad, s = std::sin(p), c = std::cos(p);
		double e2 = kF * (2 - kF), w = 1 - e2 * s * s, sw = std::sqrt(w);
		north_ = kA * (1 - e2) / (w * sw) * kDegToRad * 1e-7;
		east_ = kA / sw * c * kDegToRad * 1e-7;
		tilt_ = s / c * kDegToRad * 1e-7 / 2;
	}
	// Offsets of a point from the origin (longitude the short way round).
	double dlat7(int32_t lat_e7) const { return double(lat_e7) - lat7_; }
	double dlon7(int32_t lon_e7) const {
		double d = double(lon_e7) - lon7_;
		return d > 1.8e9 ? d - 3.6e9 : d < -1.8e9 ? d + 3.6e9 : d;
	}
	// Squared plane distance, m^2, for offsets in 1e-7 degree.
	double dist2(double dlat7, double dlon7) const {
		double y = north_ * dlat7, x = east_ * dlon7 * (1 - tilt_ * dlat7);
		return x * x + y * y;
	}
	// The smallest plane distance, squared, over offsets with |dlat| >= gap_lat,
	// |dlon| >= gap_lon and |dlat| <= max_dlat (all >= 0).
	double min_dist2(double gap_lat7, double gap_lon7, double max_dlat7) const {
		double y = north_ * gap_lat7, x = east_ * gap_lon7 * (1 - std::fabs(tilt_) * max_dlat7);
		return x * x + y * y;
	}
	double lat7() const { return lat7_; }
	double lon7() const { return lon7_; }

private:
	double lat7_, lon7_;
	double north_, east_, tilt_; // metres per 1e-7 degree; cosine's slope
};

} // namespace lt::geo
