// The spatial index against brute force: random fleets, the poles, the
// antimeridian, filters, moves, hash rebuilds, and readers racing a writer.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "core/geo.hpp"
#include "core/grid_index.hpp"
#include "core/live_table.hpp"

using namespace lt;

namespace {

struct Table {
	explicit Table(uint32_t capacity) : mem(LiveTable::bytes_needed(capacity) + 64) {
		void *p = reinterpret_cast<void *>((reinterpret_cast<uintptr_t>(mem.data()) + 63) & ~uintptr_t(63));
		LiveTable::format(p, capacity);
		t.attach(p);
	}
	Applied put(uint64_t id, double lat, double lon, int64_t ts, uint8_t status = 0) {
		Fix f{};
		f.driver_id = id;
		f.ts_ms = ts;
		f.lat_e7 = int32_t(std::llround(lat * 1e7));
		f.lon_e7 = int32_t(std::llround(lon * 1e7));
		f.speed_cms = f.heading_cd = f.accuracy_dm = kUnknown16;
		f.status = status;
		uint8_t st;
		bool reg;
		return t.apply(f, 0, &st, &reg);
	}
	std::vector<Neighbor> nearest(double lat, double lon, uint32_t k, double radius = INFINITY, uint8_t status = 0,
	                              int64_t min_ts = INT64_MIN) {
		std::vector<Neighbor> out;
		last = t.grid().nearest(t, NearestQuery{lat, lon, k, radius, status, min_ts}, out, &work);
		searches[int(last)]++;
		return out;
	}
	Search last = Search::Local;
	SearchWork work{}; // of the last search
	int searches[3] = {0, 0, 0}; // by Search
	std::vector<uint8_t> mem;
	LiveTable t{};
};

// The answer by definition: every entry, sorted by distance then id.
std::vector<Neighbor> brute(const LiveTable &t, double lat, double lon, uint32_t k, double radius = INFINITY,
                            uint8_t status = 0, int64_t min_ts = INT64_MIN) {
	std::vector<Neighbor> all;
	for (uint32_t i = 0; i < t.size(); i++) {
		LiveView v;
		t.read(i, v);
		if ((status && v.status != status) || v.ts_ms < min_ts)
			continue;
		double d = geo::geodesic_m(lat, lon, v.lat_e7 / 1e7, v.lon_e7 / 1e7);
		if (d <= radius)
			all.push_back({d, v});
	}
	std::sort(all.begin(), all.end(), [](const Neighbor &a, const Neighbor &b) {
		return a.distance_m < b.distance_m || (a.distance_m == b.distance_m && a.v.driver_id < b.v.driver_id);
	});
	if (all.size() > k)
		all.resize(k);
	return all;
}

void expect_same(const std::vector<Neighbor> &got, const std::vector<Neighbor> &want, const char *what) {
	ASSERT_EQ(got.size(), want.size()) << what;
	for (size_t i = 0; i < got.size(); i++) {
		EXPECT_EQ(got[i].v.driver_id, want[i].v.driver_id) << what << " rank " << i;
		EXPECT_EQ(got[i].distance_m, want[i].distance_m) << what << " rank " << i;
	}
}

} // namespace

TEST(Geo, DistanceMatchesKnownValues) {
	// One degree of longitude on the equator, on PostGIS's sphere.
	EXPECT_NEAR(geo::distance_m(0, 0, 0, 1), 6371008.8 * geo::kPi / 180, 1e-6);
	EXPECT_NEAR(geo::distance_m(0, 179.5, 0, -179.5), 6371008.8 * geo::kPi / 180, 1e-6); // across 180
	EXPECT_NEAR(geo::distance_m(90, 0, 90, 123), 0, 1e-6);                                 // the pole is a point
	EXPECT_NEAR(geo::distance_m(0, 0, 0, 180), 6371008.8 * geo::kPi, 1e-3);                // antipodes
}

TEST(Geo, GeodesicMatchesPostGIS) {
	// ST_Distance(geography, geography) from PostGIS 3.3 (Karney's algorithm).
	struct {
		double lat1, lon1, lat2, lon2, metres;
	} ref[] = {
	    {12.97, 77.59, 12.98, 77.59, 1106.30273731},     {12.97, 77.59, 12.97, 77.60, 1084.97771632},
	    {0, 0, 0.001, 0, 110.57427582},                    {0, 0, 0, 0.001, 111.31949079},
	    {60, 10, 60.5, 11, 78548.88704517},                {89.9, 0, 89.9, 180, 22338.79568252},
	    {-89.99, 10, -89.99, -170, 2233.87959095},         {0, 179.9995, 0, -179.9995, 111.31949079},
	    {51.5, -0.12, 40.71, -74.0, 5585806.31833992},     {-33.87, 151.2, 35.68, 139.69, 7791935.05502908},
	    {45, 45, 45, 45, 0},                               {90, 0, -90, 0, 20003931.45862545},
	    {10, 20, 10.00001, 20.00001, 1.55739743},
	};
	for (const auto &r : ref)
		EXPECT_NEAR(geo::geodesic_m(r.lat1, r.lon1, r.lat2, r.lon2), r.metres, 1e-3)
		    << r.lat1 << "," << r.lon1 << " -> " << r.lat2 << "," << r.lon2;
	// Nearly antipodal: Vincenty gives up, the sphere stands in within 0.5 %.
	EXPECT_NEAR(geo::geodesic_m(0, 0, 0.5, 179.5) / 19936288.57896531, 1, 0.005);
}

TEST(Geo, NearlyAntipodalWithinContract) {
	// Where Vincenty's iteration may fail to converge (near-antipodal pairs,
	// the equatorial ones hardest) the sphere stands in; the contract is
	// 0.5 % of ST_Distance(geography). References from PostGIS 3.3: random
	// pairs within half a degree of each other's antipode, then edge cases.
	struct {
		double lat1, lon1, lat2, lon2, metres;
	} ref[] = {
	    {41.301, -49.511, -40.864, 130.053, 19947856.9266465}, {-68.976, -103.009, 68.967, 76.880, 20001914.0347584},
	    {12.835, 91.424, -12.765, -88.107, 19978392.7136958},  {57.523, 117.893, -57.892, -62.413, 19960120.1306733},
	    {-31.979, 135.330, 31.561, -44.359, 19953066.1586126}, {-15.357, -65.836, 15.280, 114.129, 19995311.7749512},
	    {81.078, 137.434, -80.635, -42.711, 19954399.0281869}, {-1.828, 49.795, 1.534, -130.068, 19970257.7217570},
	    {-38.792, -38.292, 38.566, 141.329, 19970816.4687063}, {60.218, 158.285, -59.935, -22.034, 19969208.2615158},
	    {55.434, -173.236, -55.699, 6.911, 19973589.8033807},  {70.925, -172.564, -71.306, 7.048, 19959471.7465031},
	    {-31.538, -109.288, 31.226, 71.157, 19958912.4089612}, {-66.633, -52.068, 66.765, 127.599, 19985138.5760868},
	    {-80.064, 1.323, 80.469, -178.411, 19958441.8153235},  {-4.971, -68.831, 4.494, 111.564, 19943263.9883808},
	    {-81.118, -49.712, 80.886, 130.330, 19978015.1005926}, {83.915, -141.063, -84.139, 38.831, 19978885.2994489},
	    {80.286, 116.905, -80.438, -63.260, 19986708.0369835}, {-30.221, -124.665, 30.044, 55.490, 19982720.0913676},
	    {59.613, 49.783, -59.549, -130.120, 19996188.8509386}, {-40.328, 139.912, 40.378, -39.942, 19996660.7921863},
	    {-51.608, -3.969, 52.097, 175.621, 19944645.7723527},  {-78.079, 58.106, 78.399, -121.643, 19967783.0112001},
	    {0, 0, 0, 179.7, 19995624.8899613},                    {0, 0, 0, 179.99, 20003922.2281490},
	    {0.1, 0, -0.1, 179.9, 20003008.4215094},               {0, 0, 0.01, 180, 20002825.7158671},
	    {1, 10, -1, -170.2, 20000239.4377247},                 {0, 0, 0, -179.5, 19980861.9088910},
	    {30, 0, -30, 179.99, 20003922.2281490},                {0, 0, 0, 180, 20003931.4586255},
	};
	double worst = 0;
	for (const auto &r : ref) {
		for (bool swap : {false, true}) {
			double d = swap ? geo::geodesic_m(r.lat2, r.lon2, r.lat1, r.lon1) : geo::geodesic_m(r.lat1, r.lon1, r.lat2, r.lon2);
			double err = std::fabs(d / r.metres - 1);
			worst = std::max(worst, err);
			EXPECT_LT(err, 0.005) << r.lat1 << "," << r.lon1 << " -> " << r.lat2 << "," << r.lon2 << (swap ? " (swapped)" : "")
			                      << ": " << d << " m";
		}
	}
	RecordProperty("worst_relative_error", std::to_string(worst));
}

TEST(Geo, SphereRatioBoundsHold) {
	std::mt19937_64 rng(17);
	std::uniform_real_distribution<double> lat(-90, 90), lon(-180, 180), step(-0.5, 0.5);
	for (int i = 0; i < 200000; i++) {
		double la = lat(rng), lo = lon(rng);
		double lb = std::max(-90.0, std::min(90.0, i % 2 ? la + step(rng) : lat(rng))), lb2 = i % 2 ? lo + step(rng) : lon(rng);
		double s = geo::distance_m(la, lo, lb, lb2), g = geo::geodesic_m(la, lo, lb, lb2);
		if (s < 1 || s > 19000000) // antipodes use the sphere anyway
			continue;
		ASSERT_GE(g, s * geo::kSphereLowerRatio) << la << "," << lo << " -> " << lb << "," << lb2;
		ASSERT_LE(g, s * geo::kSphereUpperRatio) << la << "," << lo << " -> " << lb << "," << lb2;
	}
}

TEST(Geo, NearbyGeodesicSeriesMatchTheLibrary) {
	// Up to about a degree away, beyond the chord's reach, GeodesicFrom takes
	// sines and cosines from their series; they must give what the library's
	// functions give, up to the rounding both share (t2 in Vincenty's method
	// cancels: ~1e-9 m).
	std::mt19937_64 rng(29);
	std::uniform_real_distribution<double> lat(-90, 90), lon(-180, 180), u(0, 1);
	const double chord = geo::GeodesicFrom::kChordDeg;
	int checked = 0;
	for (int i = 0; i < 200000; i++) {
		double la = lat(rng), lo = lon(rng), reach = 1.2; // degrees
		double lb = std::max(-90.0, std::min(90.0, la + (u(rng) - 0.5) * 2 * reach));
		double lo2 = lo + (u(rng) - 0.5) * 2 * reach;
		if (std::fabs(lb - la) < chord && std::fabs(lo2 - lo) < chord)
			continue; // the chord's (next test)
		if (lo2 >= 180)
			lo2 -= 360;
		geo::GeodesicFrom g(la, lo);
		double got = g.to(lb, lo2), want = g.to_libm(lb, lo2);
		ASSERT_NEAR(got, want, 1e-8 + 1e-12 * want) << la << "," << lo << " -> " << lb << "," << lo2;
		checked++;
	}
	EXPECT_GT(checked, 190000);
}

TEST(Geo, ShortGeodesicsByChordMatchVincenty) {
	// Within kChordDeg in both coordinates GeodesicFrom measures the chord
	// and bends it: it must agree with Vincenty's method iterated to
	// convergence (1e-15 rad rather than the 1e-12 the far path stops at),
	// from millimetres to 11 km, at the poles and across the antimeridian.
	std::mt19937_64 rng(37);
	const double off = geo::GeodesicFrom::kChordDeg * (1 - 1e-9);
	std::uniform_real_distribution<double> lat(-90, 90), lon(-180, 180), u(0, 1);
	double worst = 0;
	for (int i = 0; i < 400000; i++) {
		double la = i % 7 == 0 ? std::copysign(90 - off * u(rng), u(rng) - 0.5) : lat(rng);
		double lo = i % 5 == 0 ? 180 - off * u(rng) : lon(rng);
		double reach = off * std::pow(10.0, -6 * u(rng) * (i % 2)); // half at full reach
		double lb = std::max(-90.0, std::min(90.0, la + (u(rng) - 0.5) * 2 * reach));
		double lo2 = lo + (u(rng) - 0.5) * 2 * reach;
		if (lo2 >= 180)
			lo2 -= 360;
		geo::GeodesicFrom g(la, lo);
		double got = g.to(lb, lo2), want = g.to_libm(lb, lo2, 1e-15);
		ASSERT_NEAR(got, want, 2e-7) << la << "," << lo << " -> " << lb << "," << lo2;
		worst = std::max(worst, std::fabs(got - want));
	}
	EXPECT_GT(worst, 0); // it is not Vincenty's method under another name
}

TEST(Geo, LocalPlaneIsCloseToTheGeodesic) {
	// Everywhere the local plane is used: below kMaxLat, offsets up to
	// kMaxOffsetDeg, across the antimeridian, from millimetres up. The search
	// allows kError (relative) plus kSlackM; the plane must do much better.
	std::mt19937_64 rng(23);
	const double lim = geo::LocalFrom::kMaxLat, off = geo::LocalFrom::kMaxOffsetDeg;
	std::uniform_real_distribution<double> lat(-lim, lim), lon(-180, 180), d(-off, off), u(0, 1);
	double worst = 0;
	for (int i = 0; i < 400000; i++) {
		double la = i % 7 == 0 ? (u(rng) < 0.5 ? -lim : lim) : lat(rng);
		double lo = i % 5 == 0 ? 180 - off * u(rng) : lon(rng);
		double scale = i % 3 == 0 ? std::pow(10.0, -6 * u(rng)) : 1; // short offsets too
		double dlat = d(rng) * scale, dlon = d(rng) * scale;
		if (i % 11 == 0) // the corners of the square
			dlat = std::copysign(off, dlat), dlon = std::copysign(off, dlon);
		int32_t la7 = int32_t(std::llround((la + dlat) * 1e7));
		double lo2 = lo + dlon;
		if (lo2 >= 180)
			lo2 -= 360;
		int32_t lo7 = int32_t(std::llround(lo2 * 1e7));
		geo::LocalFrom plane(la, lo);
		double e = std::sqrt(plane.dist2(plane.dlat7(la7), plane.dlon7(lo7)));
		double g = geo::geodesic_m(la, lo, la7 / 1e7, lo7 / 1e7);
		ASSERT_LE(std::fabs(e - g), 2e-5 * g + 1e-4) << la << "," << lo << " -> " << la7 / 1e7 << "," << lo7 / 1e7;
		if (g > 1)
			worst = std::max(worst, std::fabs(e - g) / g);
	}
	EXPECT_LT(worst, geo::LocalFrom::kError / 5);
}

TEST(Geo, LocalPlaneRectangleBoundNeverTooHigh) {
	// min_dist2() bounds the plane distance over a rectangle of offsets (a
	// cell, or the outside of a block of cells) from below: the ring search
	// skips cells and stops with it. Near 80 degrees the cosine's slope
	// matters most.
	std::mt19937_64 rng(31);
	const double lim = geo::LocalFrom::kMaxLat, off7 = geo::LocalFrom::kMaxOffsetDeg * 1e7;
	std::uniform_real_distribution<double> lat(-lim, lim), u(0, 1);
	for (int t = 0; t < 20000; t++) {
		double la = t % 4 == 0 ? std::copysign(lim, u(rng) - 0.5) : lat(rng);
		geo::LocalFrom plane(la, 10);
		double a = (u(rng) * 2 - 1) * off7, b = (u(rng) * 2 - 1) * off7; // latitude offsets
		double c = (u(rng) * 2 - 1) * off7, d = (u(rng) * 2 - 1) * off7; // longitude offsets
		if (a > b)
			std::swap(a, b);
		if (c > d)
			std::swap(c, d);
		double gap_lat = a > 0 ? a : b < 0 ? -b : 0, gap_lon = c > 0 ? c : d < 0 ? -d : 0;
		double bound = plane.min_dist2(gap_lat, gap_lon, std::max(std::fabs(a), std::fabs(b)));
		for (int i = 0; i < 50; i++) {
			double y = a + (b - a) * u(rng), x = c + (d - c) * u(rng);
			if (i == 0) // the corner nearest the point, where the bound is tight
				y = a > 0 ? a : b < 0 ? b : 0, x = c > 0 ? c : d < 0 ? d : 0;
			ASSERT_LE(bound, plane.dist2(y, x) * (1 + 1e-12)) << "lat " << la << " offsets " << y << "," << x;
		}
	}
}

TEST(Geo, RectangleBoundIsTightAndNeverTooHigh) {
	std::mt19937_64 rng(7);
	std::uniform_real_distribution<double> lat(-90, 90), lon(-180, 180), size(0.001, 2), u(0, 1);
	for (int t = 0; t < 3000; t++) {
		double qlat = lat(rng), qlon = lon(rng);
		if (t % 3 == 0) { // keep many rectangles near the query, where it matters
			qlat = std::max(-89.0, std::min(89.0, qlat));
		}
		double h = size(rng), w = size(rng);
		double lat0 = std::max(-90.0, std::min(90.0 - h, t % 3 == 0 ? qlat + (u(rng) - 0.5) * 4 : lat(rng)));
		double lon0 = std::max(-180.0, std::min(180.0 - w, t % 3 == 0 ? qlon + (u(rng) - 0.5) * 4 : lon(rng)));
		double bound = geo::rect_min_distance_m(qlat, qlon, lat0, lat0 + h, lon0, lon0 + w);
		double best = INFINITY;
		for (int i = 0; i <= 40; i++)
			for (int j = 0; j <= 40; j++)
				best = std::min(best, geo::distance_m(qlat, qlon, lat0 + h * i / 40, lon0 + w * j / 40));
		ASSERT_LE(bound, best + 1e-6) << "bound above a real point: q=(" << qlat << "," << qlon << ")";
		// Sampling only sees a grid of points, so the true minimum can be a bit lower.
		double slack = geo::distance_m(lat0, lon0, lat0 + h / 40, lon0 + w / 40) + 1e-3;
		ASSERT_GE(bound, best - slack) << "bound too loose: q=(" << qlat << "," << qlon << ")";
	}
}

TEST(GridIndex, NearestMatchesBruteForceInACity) {
	Table tb(30000);
	std::mt19937_64 rng(42);
	std::normal_distribution<double> dlat(12.97, 0.08), dlon(77.59, 0.08);
	for (uint64_t id = 1; id <= 20000; id++)
		tb.put(id, dlat(rng), dlon(rng), 1000 + int64_t(id % 97), uint8_t(1 + id % 3));
	std::uniform_real_distribution<double> qlat(12.6, 13.3), qlon(77.2, 77.9);
	for (int i = 0; i < 120; i++) {
		double la = qlat(rng), lo = qlon(rng);
		expect_same(tb.nearest(la, lo, 10), brute(tb.t, la, lo, 10), "k=10");
		expect_same(tb.nearest(la, lo, 1), brute(tb.t, la, lo, 1), "k=1");
		expect_same(tb.nearest(la, lo, 50, 2000), brute(tb.t, la, lo, 50, 2000), "k=50 r=2km");
		expect_same(tb.nearest(la, lo, 10, 5000, kStatusAvailable), brute(tb.t, la, lo, 10, 5000, kStatusAvailable),
		            "status");
		expect_same(tb.nearest(la, lo, 10, INFINITY, 0, 1050), brute(tb.t, la, lo, 10, INFINITY, 0, 1050), "max_age");
	}
	// Dense middle and sparse edges: both searches answered.
	EXPECT_GT(tb.searches[int(Search::Local)], 100);
	EXPECT_GT(tb.searches[int(Search::Cells)], 100);
}

TEST(GridIndex, DenseTownsAnsweredFromTheRingsAround) {
	// Towns as dense as a city centre (tens of drivers per cell), one across
	// the antimeridian and one at the local plane's latitude limit: the ring
	// search answers, and agrees with brute force, whatever the filters, k,
	// and where in its cell the query point lies (corners and edges too).
	// Fixes are spread over 100 s of 2027 and the freshness limit falls
	// inside a second (records keep whole seconds); one quarter of each town
	// only has fixes an hour old, so whole cells there are stale.
	const int64_t t0 = 1800000000000; // 2027-01-15, ms
	Table tb(30000);
	std::mt19937_64 rng(5);
	std::uniform_real_distribution<double> u(0, 1);
	struct Town {
		double lat, lon;
	} towns[] = {{12.97, 77.59}, {-17.5, 180}, {79.9, 20}, {-79.95, -60}};
	uint64_t id = 1;
	for (const Town &t : towns) {
		for (int i = 0; i < 6000; i++) {
			double r = 0.03 * std::sqrt(u(rng)), a = u(rng) * 2 * geo::kPi;
			double lat = t.lat + r * std::cos(a), lon = t.lon + r * std::sin(a) / std::cos(t.lat * geo::kDegToRad);
			if (lon >= 180)
				lon -= 360;
			bool stale = std::cos(a) > 0 && std::sin(a) > 0;
			tb.put(id, lat, lon, t0 + int64_t(u(rng) * 100000) - (stale ? 3600000 : 0), uint8_t(1 + id % 3));
			id++;
		}
	}
	for (int i = 0; i < 160; i++) {
		const Town &t = towns[i % 4];
		double la = t.lat + (u(rng) - 0.5) * 0.04, lo = t.lon + (u(rng) - 0.5) * 0.04 / std::cos(t.lat * geo::kDegToRad);
		if (i % 5 == 0) // on a cell corner or edge
			la = std::round(la * kCellsPerDegree) / kCellsPerDegree;
		if (i % 10 == 0)
			lo = std::round(lo * kCellsPerDegree) / kCellsPerDegree;
		if (lo >= 180)
			lo -= 360;
		SCOPED_TRACE(::testing::Message() << "q=(" << la << "," << lo << ")");
		for (uint32_t k : {1u, 10u, 64u, 65u}) {
			expect_same(tb.nearest(la, lo, k, 2000), brute(tb.t, la, lo, k, 2000), "radius");
			// Near 80 degrees cells are 75 m wide: the rings hold 10, not 64.
			bool local = std::fabs(la) < 60 ? k <= 64 : std::fabs(la) <= geo::LocalFrom::kMaxLat && k <= 10;
			if (local) {
				EXPECT_EQ(tb.last, Search::Local) << "k=" << k;
			}
		}
		expect_same(tb.nearest(la, lo, 10, 2000, kStatusBusy), brute(tb.t, la, lo, 10, 2000, kStatusBusy), "busy");
		const int64_t fresh = t0 + 60500;
		expect_same(tb.nearest(la, lo, 10, INFINITY, 0, fresh), brute(tb.t, la, lo, 10, INFINITY, 0, fresh), "fresh");
		expect_same(tb.nearest(la, lo, 10, 2000, kStatusAvailable, fresh),
		            brute(tb.t, la, lo, 10, 2000, kStatusAvailable, fresh), "fresh and available");
		expect_same(tb.nearest(la, lo, 5, 30), brute(tb.t, la, lo, 5, 30), "30 m");
		expect_same(tb.nearest(la, lo, 5, 0), brute(tb.t, la, lo, 5, 0), "radius 0");
	}
	EXPECT_GT(tb.searches[int(Search::Local)], 500);
}

TEST(GridIndex, SparseAndEmptyPlacesBesideATownAreAnsweredByTheRings) {
	// 2 km queries from 0.5 to 3 km outside a town of 3,000 drivers, at
	// latitudes where five rings span 2 km both ways: fewer than k drivers
	// are near, so the rings must cover the whole radius to decide (three
	// rings did not, and the best-first search ran). Same answers as brute
	// force either way.
	for (double town_lat : {0.0, 12.97, -20.0}) {
		Table tb(4000);
		std::mt19937_64 rng(43);
		std::uniform_real_distribution<double> u(0, 1);
		const double town_lon = 77.59, km_lat = 1 / 110.6, km_lon = km_lat / std::cos(town_lat * geo::kDegToRad);
		for (uint64_t id = 1; id <= 3000; id++) {
			double r = 2 * std::sqrt(u(rng)), a = u(rng) * 2 * geo::kPi; // a 2 km disc
			tb.put(id, town_lat + r * std::cos(a) * km_lat, town_lon + r * std::sin(a) * km_lon, 1000);
		}
		for (int i = 0; i < 200; i++) {
			double r = 2.5 + 2.5 * u(rng), a = u(rng) * 2 * geo::kPi; // 0.5-3 km beyond the edge
			double la = town_lat + r * std::cos(a) * km_lat, lo = town_lon + r * std::sin(a) * km_lon;
			SCOPED_TRACE(::testing::Message() << "q=(" << la << "," << lo << ")");
			expect_same(tb.nearest(la, lo, 10, 2000), brute(tb.t, la, lo, 10, 2000), "2 km");
			EXPECT_EQ(tb.last, Search::Local);
		}
	}
}

TEST(GridIndex, PolesAntimeridianAndEmptyPlaces) {
	Table tb(5000);
	std::mt19937_64 rng(3);
	std::uniform_real_distribution<double> near_pole(89.9, 90), lon(-180, 180), edge(179.9, 180), lat(-1, 1), u(0, 1);
	uint64_t id = 1;
	for (int i = 0; i < 500; i++)
		tb.put(id++, near_pole(rng), lon(rng), 1);
	for (int i = 0; i < 500; i++)
		tb.put(id++, -near_pole(rng), lon(rng), 1);
	for (int i = 0; i < 500; i++)
		tb.put(id++, lat(rng), u(rng) < 0.5 ? edge(rng) : -edge(rng), 1);
	tb.put(id++, 90, 0, 1);
	tb.put(id++, -90, 180, 1);
	tb.put(id++, 0, 180, 1);
	tb.put(id++, 0, -180, 1);
	struct Q {
		double lat, lon;
	} qs[] = {{90, 0}, {89.99, 45}, {89.95, -170}, {-90, 0}, {-89.99, 100}, {0, 180}, {0, -180},
	          {0.5, 179.99}, {-0.5, -179.95}, {45, 0} /* nobody near */, {-45, 90}};
	for (const Q &q : qs) {
		for (uint32_t k : {1u, 10u, 200u, 5000u}) {
			SCOPED_TRACE(::testing::Message() << "q=(" << q.lat << "," << q.lon << ") k=" << k);
			expect_same(tb.nearest(q.lat, q.lon, k), brute(tb.t, q.lat, q.lon, k), "unbounded");
			expect_same(tb.nearest(q.lat, q.lon, k, 20000), brute(tb.t, q.lat, q.lon, k, 20000), "20 km");
		}
	}
	EXPECT_TRUE(tb.nearest(45, 0, 10, 100000).empty()) << "an empty area within the radius";
	EXPECT_EQ(tb.nearest(0, 180, 10, 0).size(), 2u) << "radius 0 still finds the exact points (+180 and -180)";
}

TEST(GridIndex, EmptyCountryBetweenVillagesIsCrossedRight) {
	// Villages of a few drivers with tens of kilometres of nothing between
	// them: searches cross whole empty areas (8 x 8 cells) at once, and must
	// still find what lies beyond, also across the antimeridian and near a pole.
	Table tb(4000);
	std::mt19937_64 rng(11);
	std::uniform_real_distribution<double> u(0, 1), jitter(-0.004, 0.004);
	struct Region {
		double lat0, lon0, dlat, dlon;
	} regions[] = {{40, 10, 2, 2}, {-1, 178.5, 2, 3}, {86, -30, 3, 60}};
	uint64_t id = 1;
	for (const Region &r : regions) {
		for (int v = 0; v < 40; v++) {
			double lat = r.lat0 + u(rng) * r.dlat, lon = r.lon0 + u(rng) * r.dlon;
			for (int d = 0; d < 1 + int(u(rng) * 20); d++) {
				double dlon = lon + jitter(rng);
				if (dlon >= 180)
					dlon -= 360;
				tb.put(id++, lat + jitter(rng), dlon, 1, d % 3 == 0 ? kStatusBusy : kStatusAvailable);
			}
		}
	}
	for (const Region &r : regions) {
		for (int i = 0; i < 60; i++) {
			double lat = r.lat0 + u(rng) * r.dlat, lon = r.lon0 + u(rng) * r.dlon;
			if (lon >= 180)
				lon -= 360;
			SCOPED_TRACE(::testing::Message() << "q=(" << lat << "," << lon << ")");
			for (uint32_t k : {1u, 5u, 50u}) {
				expect_same(tb.nearest(lat, lon, k), brute(tb.t, lat, lon, k), "unbounded");
				expect_same(tb.nearest(lat, lon, k, 30000), brute(tb.t, lat, lon, k, 30000), "30 km");
				expect_same(tb.nearest(lat, lon, k, 100000, kStatusAvailable),
				            brute(tb.t, lat, lon, k, 100000, kStatusAvailable), "100 km, available");
			}
		}
	}
}

TEST(GridIndex, KLargerThanFleetAndEmptyTable) {
	Table empty(100);
	EXPECT_TRUE(empty.nearest(10, 10, 10).empty());
	Table tb(100);
	for (uint64_t id = 1; id <= 7; id++)
		tb.put(id, 10 + id * 0.001, 10, 1);
	auto got = tb.nearest(10, 10, 100);
	ASSERT_EQ(got.size(), 7u);
	for (size_t i = 0; i < got.size(); i++)
		EXPECT_EQ(got[i].v.driver_id, i + 1);
}

TEST(GridIndex, MovingDriversStayFindable) {
	Table tb(5000);
	std::mt19937_64 rng(11);
	std::uniform_real_distribution<double> lat(40.6, 40.9), lon(-74.1, -73.8), step(-0.01, 0.01);
	std::vector<std::pair<double, double>> pos(4001);
	for (uint64_t id = 1; id <= 4000; id++) {
		pos[id] = {lat(rng), lon(rng)};
		tb.put(id, pos[id].first, pos[id].second, 1);
	}
	for (int64_t round = 2; round < 30; round++) {
		for (uint64_t id = 1; id <= 4000; id++) {
			pos[id].first += step(rng);
			pos[id].second += step(rng);
			ASSERT_EQ(tb.put(id, pos[id].first, pos[id].second, round), Applied::Moved);
		}
		for (int i = 0; i < 20; i++) {
			double la = lat(rng), lo = lon(rng);
			expect_same(tb.nearest(la, lo, 15), brute(tb.t, la, lo, 15), "after moves");
		}
	}
	// Every driver sits in exactly one cell list, in the cell of its position.
	uint32_t in_lists = 0;
	for (uint32_t i = 0; i < tb.t.size(); i++)
		in_lists += tb.t.grid().cell_of(i) != kNoEntry;
	EXPECT_EQ(in_lists, tb.t.size());
}

TEST(GridIndex, HashRebuildKeepsAnswersRight) {
	// 64 drivers -> 1024 slots; driving across > 716 distinct cells forces rebuilds.
	Table tb(64);
	std::mt19937_64 rng(5);
	std::uniform_real_distribution<double> lat(-60, 60), lon(-180, 180);
	for (int64_t round = 1; round <= 40; round++)
		for (uint64_t id = 1; id <= 64; id++)
			tb.put(id, lat(rng), lon(rng), round);
	EXPECT_GT(tb.t.grid().rebuilds(), 0u);
	EXPECT_LE(tb.t.grid().used(), 716u);
	for (int i = 0; i < 100; i++) {
		double la = lat(rng), lo = lon(rng);
		expect_same(tb.nearest(la, lo, 5), brute(tb.t, la, lo, 5), "after rebuilds");
	}
}

TEST(GridIndex, CellsAtTheSamePlaceOfTheirAreasAllFitTheHash) {
	// Drivers on a grid 8 cells apart: every cell at the same place of its
	// area, so every key starts probing at the same place of some bucket.
	// 2,000 of them in 4,096 slots (64 buckets): the buckets overflow into
	// each other and every driver must still be found.
	Table tb(2000);
	ASSERT_EQ(GridIndex::slots_for(2000), 4096u);
	auto at = [](int cell) { return (cell + 0.5) / kCellsPerDegree; }; // a cell's middle, from 0 degrees
	uint64_t id = 1;
	for (int a = 0; a < 40; a++)
		for (int b = 0; b < 50; b++, id++)
			tb.put(id, at(8 * a), at(8 * b), 1);
	EXPECT_EQ(tb.t.grid().used(), 2000u);
	EXPECT_EQ(tb.t.grid().rebuilds(), 0u);
	for (uint32_t i = 0; i < tb.t.size(); i++) {
		LiveView v;
		tb.t.read(i, v);
		ASSERT_NE(tb.t.grid().cell_of(i), kNoEntry) << "driver " << v.driver_id << " has no cell";
		auto got = tb.nearest(v.lat_e7 / 1e7, v.lon_e7 / 1e7, 1, 100);
		ASSERT_EQ(got.size(), 1u) << "driver " << v.driver_id;
		EXPECT_EQ(got[0].v.driver_id, v.driver_id);
	}
	std::vector<LiveView> box;
	tb.t.grid().within_box(tb.t, -1, 2, -1, 2, INT64_MIN, box);
	EXPECT_EQ(box.size(), 2000u);
}

TEST(GridIndex, WithinBoxMatchesBruteForce) {
	Table tb(20000);
	std::mt19937_64 rng(9);
	std::uniform_real_distribution<double> lat(51.3, 51.7), lon(-0.5, 0.3), u(0, 1);
	for (uint64_t id = 1; id <= 15000; id++)
		tb.put(id, lat(rng), lon(rng), int64_t(id % 10));
	for (int i = 0; i < 200; i++) {
		double a = lat(rng), b = lat(rng), c = lon(rng), d = lon(rng);
		double lat0 = std::min(a, b), lat1 = std::max(a, b), lon0 = std::min(c, d), lon1 = std::max(c, d);
		if (i % 4 == 0) // small boxes, the common case
			lat1 = lat0 + 0.01 * u(rng), lon1 = lon0 + 0.01 * u(rng);
		std::vector<LiveView> got;
		tb.t.grid().within_box(tb.t, lat0, lat1, lon0, lon1, 5, got);
		std::vector<uint64_t> g, w;
		for (const LiveView &v : got)
			g.push_back(v.driver_id);
		for (uint32_t j = 0; j < tb.t.size(); j++) {
			LiveView v;
			tb.t.read(j, v);
			double la = v.lat_e7 / 1e7, lo = v.lon_e7 / 1e7;
			if (v.ts_ms >= 5 && la >= lat0 && la <= lat1 && lo >= lon0 && lo <= lon1)
				w.push_back(v.driver_id);
		}
		std::sort(g.begin(), g.end());
		std::sort(w.begin(), w.end());
		ASSERT_EQ(g, w) << "box " << lat0 << "," << lat1 << "," << lon0 << "," << lon1;
	}
}

TEST(GridIndex, CostDependsOnTheNeighbourhoodNotTheFleet) {
	// 10,000 and 1,000,000 drivers at the same density (about 80 a km², half
	// of them available) on 100 times the area: a query must read about the
	// same cells and records in both, and never scan the fleet. Counted, not
	// timed, so the figures repeat exactly on any machine.
	struct Cost {
		double cells, records, ranked;
	};
	auto measure = [](uint32_t n) {
		Table tb(n);
		std::mt19937_64 rng(7);
		const double side = 0.1 * std::sqrt(n / 10000.0); // degrees: 11 km a side for 10,000
		std::uniform_real_distribution<double> u(0, 1);
		for (uint64_t id = 1; id <= n; id++)
			tb.put(id, u(rng) * side, u(rng) * side, 1, id % 2 ? kStatusAvailable : kStatusBusy);
		// Points in the middle 60 % of the square: their neighbourhoods are
		// alike whatever the fleet, kilometres from its edges.
		constexpr int kQueries = 2000;
		Cost c{0, 0, 0};
		for (int i = 0; i < kQueries; i++) {
			auto r = tb.nearest((0.2 + 0.6 * u(rng)) * side, (0.2 + 0.6 * u(rng)) * side, 10, 2000, kStatusAvailable);
			EXPECT_EQ(r.size(), 10u);
			c.cells += tb.work.cells;
			c.records += tb.work.records;
			c.ranked += tb.work.ranked;
		}
		EXPECT_EQ(tb.searches[int(Search::Local)], kQueries) << n << " drivers: every query answered by the rings";
		return Cost{c.cells / kQueries, c.records / kQueries, c.ranked / kQueries};
	};
	Cost small = measure(10000), large = measure(1000000);
	RecordProperty("records_per_query_10000", std::to_string(small.records));
	RecordProperty("records_per_query_1000000", std::to_string(large.records));
	EXPECT_GT(small.records, 10.0);
	EXPECT_LT(small.records, 500.0); // a few cells, out of 10,000 drivers
	EXPECT_NEAR(large.cells / small.cells, 1.0, 0.1);
	EXPECT_NEAR(large.records / small.records, 1.0, 0.1);
	EXPECT_NEAR(large.ranked / small.ranked, 1.0, 0.1);
}

TEST(GridIndex, ADriverSeenInTwoCellsCountsOnce) {
	// The query point sits on the edge between two cells. Driver 1 jumps
	// between 50 m north (one cell) and 60 m south (the other) while a
	// thousand others move through the same cells, never within 250 m;
	// driver 2 stays 100 m east. A reader that meets driver 1 in both cells
	// must not take it for two drivers and leave driver 2 out: every answer
	// has k drivers, driver 2 among them; k = 2 for the ring search, k = 65
	// (above its limit) for the best-first search. (A reader may miss
	// driver 1 when it jumps between the two cell reads, and answer driver 2
	// and a mover: a driver caught moving may be seen at either place, or,
	// rarely, at neither; this test does not look for that.)
	Table tb(2000);
	const double qlat = 48.0, qlon = 2.0; // 48.0 is a cell edge (1/256 degree grid)
	const double north = qlat + 50 / 111200.0, south = qlat - 60 / 111200.0;
	const double east = qlon + 100 / (111200.0 * std::cos(qlat * geo::kDegToRad));
	tb.put(1, north, qlon, 1);
	tb.put(2, qlat, east, 1);
	std::mt19937_64 rng(8);
	std::uniform_real_distribution<double> d(-0.01, 0.01);
	auto mover = [&](std::mt19937_64 &g) {
		for (;;) {
			double la = qlat + d(g), lo = qlon + d(g);
			if (geo::geodesic_m(qlat, qlon, la, lo) > 250)
				return std::pair<double, double>{la, lo};
		}
	};
	for (uint64_t id = 3; id <= 1000; id++) {
		auto p = mover(rng);
		tb.put(id, p.first, p.second, 1);
	}
	std::atomic<bool> stop{false};
	std::atomic<long> queries{0}, bad{0}, short_{0}, by[3] = {{0}, {0}, {0}};
	std::vector<std::thread> readers;
	for (uint32_t k : {2u, 65u}) {
		readers.emplace_back([&, k] {
			std::vector<Neighbor> got;
			while (!stop.load()) {
				Search s = tb.t.grid().nearest(tb.t, NearestQuery{qlat, qlon, k, 1000, 0, INT64_MIN}, got);
				bool has2 = false;
				for (const Neighbor &n : got)
					has2 |= n.v.driver_id == 2;
				bad += !(got.size() == k && has2);
				short_ += got.size() < k;
				by[int(s)]++;
				queries++;
			}
		});
	}
	std::mt19937_64 wrng(9);
	int64_t ts = 2;
	auto t0 = std::chrono::steady_clock::now();
	while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(800)) {
		if (ts % 200 == 0)
			tb.put(1, ts % 400 ? south : north, qlon, ts);
		auto p = mover(wrng);
		tb.put(3 + uint64_t(ts) % 998, p.first, p.second, ts);
		ts++;
	}
	stop = true;
	for (auto &t : readers)
		t.join();
	EXPECT_GT(queries.load(), 1000);
	EXPECT_GT(by[int(Search::Local)].load(), 0) << "the ring search answered some";
	EXPECT_GT(by[int(Search::Cells)].load(), 0) << "the best-first search answered some";
	EXPECT_EQ(bad.load(), 0) << "of " << queries.load() << " queries, " << short_.load() << " with fewer than k";
	EXPECT_GT(ts, 2000) << "driver 1 jumped often";
}

TEST(GridIndex, ADriverCrossingBetweenCellsIsAlwaysFoundOnce) {
	// One driver goes back and forth across a cell edge as fast as the writer
	// can move it. It is in one cell or the other at every moment, but a
	// search reads cells one after the other: readers asking for the nearest
	// driver, or for the drivers in a box around both places, must still find
	// it, and only once.
	Table tb(1000);
	const double lat = 48.0 + 0.5 / kCellsPerDegree;   // the middle of a cell row
	const double edge = 2.0 + 100.0 / kCellsPerDegree; // a cell edge
	const double west = edge - 0.2 / kCellsPerDegree, east = edge + 0.2 / kCellsPerDegree;
	tb.put(1, lat, west, 1);
	ASSERT_NE(GridIndex::key_of(int32_t(std::llround(lat * 1e7)), int32_t(std::llround(west * 1e7))),
	          GridIndex::key_of(int32_t(std::llround(lat * 1e7)), int32_t(std::llround(east * 1e7))));
	std::atomic<bool> stop{false};
	std::atomic<long> queries{0}, missed{0}, boxes{0}, box_wrong{0};
	std::vector<std::thread> readers;
	readers.emplace_back([&] {
		std::vector<Neighbor> got;
		while (!stop.load()) {
			tb.t.grid().nearest(tb.t, NearestQuery{lat, edge, 1, 1000, 0, INT64_MIN}, got);
			missed += got.size() != 1;
			queries++;
		}
	});
	readers.emplace_back([&] {
		std::vector<LiveView> got;
		while (!stop.load()) {
			tb.t.grid().within_box(tb.t, lat - 0.001, lat + 0.001, west - 0.001, east + 0.001, INT64_MIN, got);
			box_wrong += got.size() != 1;
			boxes++;
		}
	});
	int64_t ts = 2;
	auto t0 = std::chrono::steady_clock::now();
	while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1000))
		for (int i = 0; i < 1000; i++, ts++)
			tb.put(1, lat, ts % 2 ? east : west, ts);
	stop = true;
	for (auto &t : readers)
		t.join();
	EXPECT_GT(queries.load(), 1000);
	EXPECT_GT(boxes.load(), 1000);
	EXPECT_EQ(missed.load(), 0) << "of " << queries.load() << " nearest queries, " << ts << " moves";
	EXPECT_EQ(box_wrong.load(), 0) << "of " << boxes.load() << " box queries";
}

TEST(GridIndex, ADriverMovingIntoNewCellsIsAlwaysFoundOnce) {
	// The same with a driver that keeps going where no cell exists yet: it
	// sweeps a fresh 50 x 50-cell square cell by cell, then the next square
	// (the hash fills and is rebuilt on the way). Readers search the square
	// it is in: it must be found, once, unless it left the square meanwhile.
	Table tb(1000);
	constexpr int kSide = 50;
	auto corner_lat = [](int r) { return 10.0 + 0.3 * (r % 20); };
	// Even: the driver is in square at / 2. Odd: it is on its way to the next
	// one. Only a search that began and ended in the same even state is
	// checked: a writer preempted between squares must not count as a miss.
	std::atomic<int> at{0};
	std::atomic<bool> stop{false};
	std::atomic<long> checked{0}, wrong{0};
	tb.put(1, corner_lat(0), 20.0, 1);
	auto reader = [&](bool box) {
		std::vector<Neighbor> near;
		std::vector<LiveView> in;
		while (!stop.load()) {
			int seen = at.load();
			if (seen & 1)
				continue;
			int r = seen / 2;
			double lat0 = corner_lat(r), side = double(kSide) / kCellsPerDegree;
			size_t n;
			if (box) {
				tb.t.grid().within_box(tb.t, lat0, lat0 + side, 20.0, 20.0 + side, INT64_MIN, in);
				n = in.size();
			} else {
				tb.t.grid().nearest(tb.t, NearestQuery{lat0 + side / 2, 20.0 + side / 2, 1, 50000, 0, INT64_MIN}, near);
				n = near.size();
			}
			std::atomic_thread_fence(std::memory_order_acquire); // the search's reads before the re-check
			if (at.load() != seen)
				continue; // it set off for the next square meanwhile
			wrong += n != 1;
			checked++;
		}
	};
	std::thread by_box(reader, true), by_distance(reader, false);
	int64_t ts = 2;
	auto t0 = std::chrono::steady_clock::now();
	// A second at least; on a loaded machine, where a preempted reader's
	// searches often straddle two squares, on until 500 were checked (10 s
	// at most).
	auto more = [&] {
		auto t = std::chrono::steady_clock::now() - t0;
		return t < std::chrono::seconds(1) || (checked.load() < 500 && t < std::chrono::seconds(10));
	};
	for (int r = 0; more(); r++) {
		if (r > 0)
			at.store(2 * r - 1); // leaving square r - 1
		// Against the readers' order (rows north, cells east), so that it comes
		// towards them: into cells they found empty, out of those they read next.
		for (int c = kSide * kSide - 1; c >= 0; c--, ts++) {
			tb.put(1, corner_lat(r) + (c / kSide + 0.5) / kCellsPerDegree, 20.0 + (c % kSide + 0.5) / kCellsPerDegree, ts);
			if (c == kSide * kSide - 1)
				at.store(2 * r); // in square r
		}
	}
	stop = true;
	by_box.join();
	by_distance.join();
	EXPECT_GT(checked.load(), 100);
	EXPECT_GT(tb.t.grid().rebuilds(), 0u);
	EXPECT_EQ(wrong.load(), 0) << "of " << checked.load() << " searches, " << ts << " moves";
}

TEST(GridIndex, ReadersNeverSeeTornListsWhileTheWriterMoves) {
	// Ten drivers stay put around the query point; thousands of others move
	// fast around them. Every reader answer must be exactly the ten.
	Table tb(20000);
	for (uint64_t id = 1; id <= 10; id++)
		tb.put(id, 48.0 + id * 1e-5, 2.0, 1);
	std::mt19937_64 rng(2);
	std::uniform_real_distribution<double> lat(47.9, 48.1), lon(1.9, 2.1);
	for (uint64_t id = 11; id <= 10000; id++) {
		double la = lat(rng), lo = lon(rng);
		if (std::fabs(la - 48.0) < 0.01 && std::fabs(lo - 2.0) < 0.01)
			la += 0.02; // keep movers out of the inner circle
		tb.put(id, la, lo, 1);
	}
	std::atomic<bool> stop{false};
	std::atomic<long> queries{0}, bad{0};
	std::vector<std::thread> readers;
	for (int r = 0; r < 3; r++) {
		readers.emplace_back([&] {
			std::vector<Neighbor> got;
			while (!stop.load()) {
				tb.t.grid().nearest(tb.t, NearestQuery{48.0, 2.0, 10, 1000, 0, INT64_MIN}, got);
				bool ok = got.size() == 10;
				for (size_t i = 0; ok && i < got.size(); i++)
					ok = got[i].v.driver_id == i + 1;
				bad += !ok;
				queries++;
			}
		});
	}
	std::mt19937_64 wrng(3);
	int64_t ts = 2;
	auto t0 = std::chrono::steady_clock::now();
	while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1500)) {
		for (uint64_t id = 11; id <= 10000; id++) {
			double la = lat(wrng), lo = lon(wrng);
			if (std::fabs(la - 48.0) < 0.01 && std::fabs(lo - 2.0) < 0.01)
				la += 0.02;
			tb.put(id, la, lo, ts);
		}
		ts++;
	}
	stop = true;
	for (auto &t : readers)
		t.join();
	EXPECT_GT(queries.load(), 100);
	EXPECT_EQ(bad.load(), 0) << "of " << queries.load() << " queries";
	EXPECT_GT(ts, 3) << "the writer made several full passes";
}
