// livetrack-gridbench: the spatial index alone, in one process, beside its
// peer (every entry measured, the answer by definition) on the same fleet.
//
// A city of N drivers (uniform in a disc), a share of them available; random
// query points in the city (or in the square around it: --square), k nearest
// available within a radius, fresh within a minute. Prints microseconds per
// query for GridIndex::nearest(), which search answered and what it read
// (cells, records, ranked entries), the same for a scan of every entry on a
// sample of the points, their ratio, and whether the two gave the same
// answers on that sample. Run by bench/grid.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/geo.hpp"
#include "core/grid_index.hpp"
#include "core/live_table.hpp"

namespace {

struct Options {
	uint32_t drivers = 100000, capacity = 0, queries = 200000, k = 10;
	double available = 0.5, radius_km = 15, query_radius_m = 2000;
	bool square = false;
	double evict_mb = 0; // memory walked between queries (--evict-mb)
};

[[noreturn]] void usage() {
	std::fprintf(stderr, "usage: livetrack-gridbench [--drivers N] [--capacity C] [--available F] [--radius-km R]\n"
	                     "                           [--queries Q] [--k K] [--query-radius M] [--square]\n"
	                     "                           [--evict-mb M]\n");
	std::exit(2);
}

Options parse(int argc, char **argv) {
	Options o;
	for (int i = 1; i < argc; i++) {
		std::string a = argv[i];
		auto next = [&]() -> const char * { return i + 1 < argc ? argv[++i] : (usage(), nullptr); };
		if (a == "--drivers")
			o.drivers = uint32_t(std::atol(next()));
		else if (a == "--capacity")
			o.capacity = uint32_t(std::atol(next()));
		else if (a == "--available")
			o.available = std::atof(next());
		else if (a == "--radius-km")
			o.radius_km = std::atof(next());
		else if (a == "--queries")
			o.queries = uint32_t(std::atol(next()));
		else if (a == "--k")
			o.k = uint32_t(std::atol(next()));
		else if (a == "--query-radius")
			o.query_radius_m = std::atof(next());
		else if (a == "--square")
			o.square = true;
		else if (a == "--evict-mb")
			o.evict_mb = std::atof(next());
		else
			usage();
	}
	if (o.drivers == 0 || o.queries == 0 || o.k == 0 || !(o.available > 0 && o.available <= 1) || !(o.evict_mb >= 0))
		usage();
	if (o.capacity < o.drivers)
		o.capacity = o.drivers;
	return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
	return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

int main(int argc, char **argv) {
	Options o = parse(argc, argv);
	using namespace lt;
	std::vector<uint8_t> mem(LiveTable::bytes_needed(o.capacity) + 64);
	void *p = reinterpret_cast<void *>((reinterpret_cast<uintptr_t>(mem.data()) + 63) & ~uintptr_t(63));
	LiveTable::format(p, o.capacity);
	LiveTable live{};
	live.attach(p);

	const double lat0 = 12.9716, lon0 = 77.5946, km_lat = 111.2, km_lon = 111.2 * std::cos(lat0 * geo::kDegToRad);
	std::mt19937_64 rng(1);
	std::uniform_real_distribution<double> u(0, 1);
	int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
	                  std::chrono::system_clock::now().time_since_epoch())
	                  .count();
	for (uint32_t i = 0; i < o.drivers; i++) {
		double r = o.radius_km * std::sqrt(u(rng)), a = u(rng) * 2 * geo::kPi;
		Fix f{};
		f.driver_id = i + 1;
		f.ts_ms = now;
		f.lat_e7 = int32_t(std::llround((lat0 + r * std::cos(a) / km_lat) * 1e7));
		f.lon_e7 = int32_t(std::llround((lon0 + r * std::sin(a) / km_lon) * 1e7));
		f.speed_cms = f.heading_cd = f.accuracy_dm = kUnknown16;
		f.status = u(rng) < o.available ? kStatusAvailable : kStatusBusy;
		uint8_t st;
		bool reg;
		live.apply(f, 0, &st, &reg);
	}
	// Points in the disc, or in the square around it (a fifth outside).
	std::vector<NearestQuery> qs(o.queries);
	for (NearestQuery &q : qs) {
		double dy, dx;
		do {
			dy = (u(rng) * 2 - 1) * o.radius_km, dx = (u(rng) * 2 - 1) * o.radius_km;
		} while (!o.square && dy * dy + dx * dx > o.radius_km * o.radius_km);
		q = NearestQuery{lat0 + dy / km_lat, lon0 + dx / km_lon, o.k, o.query_radius_m, kStatusAvailable, now - 60000};
	}

	std::vector<Neighbor> out;
	size_t searches[3] = {0, 0, 0}, found = 0;
	// In a server the search's lines do not stay in cache between queries:
	// the executor, the client and the kernel run in between. --evict-mb
	// walks that much other memory before each query, untimed, to show it.
	// Every query is timed on its own, so the rows of bench/grid's cold-cache
	// table (0 MB included) are measured alike.
	std::vector<uint64_t> other(size_t(o.evict_mb * (1 << 20) / sizeof(uint64_t)));
	double grid_s = 0;
	for (const NearestQuery &q : qs) {
		for (size_t j = 0; j < other.size(); j += 64 / sizeof(uint64_t))
			other[j]++; // written: the lines leave dirty, as a server's would
		asm volatile("" ::: "memory"); // the walk is not optimised away
		auto t0 = std::chrono::steady_clock::now();
		searches[int(live.grid().nearest(live, q, out))]++;
		grid_s += seconds_since(t0);
		found += out.size();
	}
	double grid_us = grid_s * 1e6 / o.queries;
	// What the same queries read, counted on a second pass so that counting
	// costs the timed one nothing.
	double cells = 0, records = 0, ranked = 0;
	for (const NearestQuery &q : qs) {
		SearchWork w;
		live.grid().nearest(live, q, out, &w);
		cells += w.cells;
		records += w.records;
		ranked += w.ranked;
	}

	// The peer: every entry, on a sample of the same points.
	uint32_t sample = std::max<uint32_t>(1, std::min<uint32_t>(o.queries, 2000000000u / o.drivers / 50));
	std::vector<std::vector<Neighbor>> want(sample);
	auto t0 = std::chrono::steady_clock::now();
	for (uint32_t s = 0; s < sample; s++) {
		const NearestQuery &q = qs[s];
		geo::GeodesicFrom origin(q.lat, q.lon);
		std::vector<Neighbor> &all = want[s];
		LiveView v;
		for (uint32_t i = 0; i < live.size(); i++) {
			live.read(i, v);
			if (v.status != q.status || v.ts_ms < q.min_ts_ms)
				continue;
			double d = origin.to(v.lat_e7 / 1e7, v.lon_e7 / 1e7);
			if (d <= q.radius_m)
				all.push_back({d, v});
		}
		size_t k = std::min<size_t>(q.k, all.size());
		std::partial_sort(all.begin(), all.begin() + long(k), all.end(), [](const Neighbor &a, const Neighbor &b) {
			return a.distance_m < b.distance_m || (a.distance_m == b.distance_m && a.v.driver_id < b.v.driver_id);
		});
		all.resize(k);
	}
	double scan_us = seconds_since(t0) * 1e6 / sample;
	uint32_t same = 0;
	for (uint32_t s = 0; s < sample; s++) {
		live.grid().nearest(live, qs[s], out);
		bool eq = out.size() == want[s].size();
		for (size_t i = 0; eq && i < out.size(); i++)
			eq = out[i].v.driver_id == want[s][i].v.driver_id && out[i].distance_m == want[s][i].distance_m;
		same += eq;
	}

	std::string evicted;
	if (!other.empty()) {
		char buf[96];
		std::snprintf(buf, sizeof buf, "%.2f MB of other memory walked before each query (untimed); ", o.evict_mb);
		evicted = buf;
	}
	std::printf("| search | us/query | scan / this |\n|---|---:|---:|\n");
	std::printf("| GridIndex::nearest (%u queries; rings %.1f %%, best-first %.1f %%, scan %.1f %%) | %.3f | %.0f |\n",
	            o.queries, 100.0 * searches[0] / o.queries, 100.0 * searches[1] / o.queries,
	            100.0 * searches[2] / o.queries, grid_us, scan_us / grid_us);
	std::printf("| every entry, exact geodesic (%u of the same points) | %.3f | 1 |\n\n", sample, scan_us);
	std::printf("%u drivers (%.0f %% available) in a %.0f km disc, hash for %u; k = %u within %.0f m, points in the %s; "
	            "%.2f results per query; a query read %.1f cells, %.1f records and ranked %.1f entries; "
	            "%sthe same answers as the scan on %u of %u points\n",
	            o.drivers, o.available * 100, o.radius_km, o.capacity, o.k, o.query_radius_m,
	            o.square ? "square around it" : "disc", double(found) / o.queries, cells / o.queries,
	            records / o.queries, ranked / o.queries, evicted.c_str(), same, sample);
	return same == sample ? 0 : 1;
}
