// The listener's feed of drivers that moved (core/moved_feed.hpp).
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/moved_feed.hpp"

using lt::MovedFeed;

TEST(MovedFeed, ReadersGoOnFromWhereTheyStopped) {
	std::unique_ptr<uint64_t[]> mem(new uint64_t[MovedFeed::bytes_needed(8) / 8 + 1]);
	MovedFeed::format(mem.get(), 8);
	MovedFeed f{};
	f.attach(mem.get());
	uint64_t a = f.head(), b = f.head();
	for (uint32_t i = 1; i <= 5; i++)
		f.push(i);
	std::vector<uint32_t> got;
	EXPECT_TRUE(f.read(a, [&](uint32_t e) { got.push_back(e); }));
	EXPECT_EQ(got, (std::vector<uint32_t>{1, 2, 3, 4, 5}));
	got.clear();
	EXPECT_TRUE(f.read(a, [&](uint32_t e) { got.push_back(e); }));
	EXPECT_TRUE(got.empty());
	f.push(6);
	EXPECT_TRUE(f.read(a, [&](uint32_t e) { got.push_back(e); }));
	EXPECT_EQ(got, (std::vector<uint32_t>{6}));
	// Reader b lagged: 6 entries in a ring of 8 are still all there.
	got.clear();
	EXPECT_TRUE(f.read(b, [&](uint32_t e) { got.push_back(e); }));
	EXPECT_EQ(got.size(), 6u);
}

TEST(MovedFeed, AReaderARingBehindIsTold) {
	std::unique_ptr<uint64_t[]> mem(new uint64_t[MovedFeed::bytes_needed(8) / 8 + 1]);
	MovedFeed::format(mem.get(), 8);
	MovedFeed f{};
	f.attach(mem.get());
	uint64_t pos = f.head();
	for (uint32_t i = 0; i < 20; i++)
		f.push(i);
	std::vector<uint32_t> got;
	EXPECT_FALSE(f.read(pos, [&](uint32_t e) { got.push_back(e); }));
	// What is still in the ring comes: the newest 8.
	EXPECT_EQ(got, (std::vector<uint32_t>{12, 13, 14, 15, 16, 17, 18, 19}));
	EXPECT_EQ(pos, f.head());
}
