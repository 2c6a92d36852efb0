#include "area.hpp"

#include <algorithm>
#include <cmath>

namespace lt {

void Area::begin_polygon() { polygons_++; }

void Area::add_ring(const std::vector<double> &ll) {
	if (polygons_ == 0)
		polygons_ = 1;
	size_t n = ll.size() / 2;
	if (n >= 2 && ll[0] == ll[2 * n - 2] && ll[1] == ll[2 * n - 1])
		n--; // closed: the last point repeats the first
	if (n < 3)
		return;
	Ring r{polygons_ - 1, uint32_t(pts_.size() / 2), uint32_t(n)};
	for (size_t i = 0; i < n; i++) {
		double lon = ll[2 * i], lat = ll[2 * i + 1];
		if (pts_.empty())
			bounds_ = Box{lon, lat, lon, lat};
		bounds_.min_lon = std::min(bounds_.min_lon, lon);
		bounds_.max_lon = std::max(bounds_.max_lon, lon);
		bounds_.min_lat = std::min(bounds_.min_lat, lat);
		bounds_.max_lat = std::max(bounds_.max_lat, lat);
		pts_.push_back(lon);
		pts_.push_back(lat);
	}
	rings_.push_back(r);
}

namespace {

// On segment a-b, within a relative epsilon (the edge counts as inside).
bool on_segment(double x, double y, double ax, double ay, double bx, double by) {
	double cross = (bx - ax) * (y - ay) - (by - ay) * (x - ax);
	double len = std::fabs(bx - ax) + std::fabs(by - ay);
	if (std::fabs(cross) > 1e-12 * (len + 1))
		return false;
	return x >= std::min(ax, bx) - 1e-12 && x <= std::max(ax, bx) + 1e-12 && y >= std::min(ay, by) - 1e-12 &&
	       y <= std::max(ay, by) + 1e-12;
}

} // namespace

bool Area::contains(double lat, double lon) const {
	if (everywhere())
		return true;
	if (!bounds_.contains(lat, lon))
		return false;
	// Even-odd over each polygon's rings (outer ring and holes alike).
	std::vector<uint8_t> inside(polygons_, 0);
	for (const Ring &r : rings_) {
		const double *p = &pts_[2 * size_t(r.first)];
		bool in = false;
		for (uint32_t i = 0, j = r.count - 1; i < r.count; j = i++) {
			double xi = p[2 * i], yi = p[2 * i + 1], xj = p[2 * j], yj = p[2 * j + 1];
			if (on_segment(lon, lat, xi, yi, xj, yj))
				return true;
			if ((yi > lat) != (yj > lat) && lon < (xj - xi) * (lat - yi) / (yj - yi) + xi)
				in = !in;
		}
		if (in)
			inside[r.polygon] ^= 1;
	}
	return std::any_of(inside.begin(), inside.end(), [](uint8_t v) { return v != 0; });
}

} // namespace lt
