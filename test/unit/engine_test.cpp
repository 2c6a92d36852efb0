// The listener's network engine with real sockets on 127.0.0.1.
//
// The test thread plays every part: it drives the engine with run_once(false)
// (which never blocks), acts as devices through client sockets, and plays the
// flusher by releasing ring records and calling send_acks(). All waits poll
// with a deadline; absence of output is checked over a short pumping window.
#include <thread>

#include "engine_fixture.hpp"

using namespace lt;
using namespace lt_test;

// ---- UDP -------------------------------------------------------------------

TEST_F(EngineTest, UdpBinaryMessageUpdatesLiveStateAndRing) {
	start();
	int64_t now = now_ms();
	std::vector<Fix> f = {make_fix(11, now - 2000, 129716000, 775946000), make_fix(12, now - 1500, -1, -2),
	                      make_fix(11, now - 1000, 129716100, 775946100)};
	f[1].status = kStatusBusy;
	f[2].speed_cms = 0xFFFF;
	int64_t before_us = now_us();
	udp_send(make_frame(f));
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 3; }));
	int64_t after_us = now_us();
	EXPECT_EQ(ctr.udp_datagrams, 1u);
	EXPECT_EQ(ctr.received_messages, 1u);
	EXPECT_EQ(ctr.rejected_malformed + ctr.rejected_auth + ctr.rejected_range + ctr.rejected_clock, 0u);
	EXPECT_EQ(ctr.dropped_ring_full, 0u);
	EXPECT_EQ(ctr.late_records, 0u);
	EXPECT_TRUE(eng->take_flusher_wake()); // ring went from empty to non-empty
	EXPECT_FALSE(eng->take_flusher_wake());

	auto r = ring_contents();
	ASSERT_EQ(r.size(), 3u);
	for (size_t i = 0; i < 3; i++) {
		EXPECT_EQ(r[i].fix.driver_id, f[i].driver_id) << i;
		EXPECT_EQ(r[i].fix.ts_ms, f[i].ts_ms) << i;
		EXPECT_EQ(r[i].fix.lat_e7, f[i].lat_e7) << i;
		EXPECT_EQ(r[i].fix.lon_e7, f[i].lon_e7) << i;
		EXPECT_EQ(r[i].fix.speed_cms, f[i].speed_cms) << i;
		EXPECT_GE(r[i].received_us, before_us - 1000);
		EXPECT_LE(r[i].received_us, after_us + 1000);
		EXPECT_EQ(r[i].flags & kPingLate, 0) << i;
	}
	// First sight of each driver is registered; the ring carries the effective status.
	EXPECT_TRUE(r[0].flags & kPingRegister);
	EXPECT_EQ(r[0].fix.status, kStatusAvailable);
	EXPECT_TRUE(r[1].flags & kPingRegister);
	EXPECT_EQ(r[1].fix.status, kStatusBusy);
	EXPECT_FALSE(r[2].flags & kPingRegister);
	EXPECT_EQ(r[2].fix.status, kStatusAvailable);

	LiveView v;
	ASSERT_TRUE(live.get(11, v));
	EXPECT_EQ(v.ts_ms, now - 1000);
	EXPECT_EQ(v.lat_e7, 129716100);
	EXPECT_EQ(v.speed_cms, 0xFFFF);
	EXPECT_EQ(v.status, kStatusAvailable);
	ASSERT_TRUE(live.get(12, v));
	EXPECT_EQ(v.lat_e7, -1);
	EXPECT_EQ(v.lon_e7, -2);
	EXPECT_EQ(v.status, kStatusBusy);
	EXPECT_EQ(live.size(), 2u);
}

// Receipt is when the kernel got the datagram, not when the listener read
// it: a datagram left 50 ms in the socket buffer says so, in its received
// time and in the receipt-to-visible histogram.
TEST_F(EngineTest, UdpReceiptIsTheKernelTimestamp) {
	start();
	// When no socket on the machine had asked for receive timestamps before,
	// Linux switches them on from a work queue, a moment later; until then a
	// datagram is stamped when it is read. (Seen on a fresh CI machine.)
	std::this_thread::sleep_for(std::chrono::milliseconds(100));
	int64_t now = now_ms();
	int64_t sent_us = now_us();
	udp_send(make_frame({make_fix(21, now, 1, 1), make_fix(22, now, 2, 2)}));
	std::this_thread::sleep_for(std::chrono::milliseconds(50));
	int64_t read_from_us = now_us();
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 2; }));
	auto r = ring_contents();
	ASSERT_EQ(r.size(), 2u);
	EXPECT_GE(r[0].received_us, sent_us);
	EXPECT_LT(r[0].received_us, read_from_us - 40000);
	EXPECT_EQ(r[1].received_us, r[0].received_us);
	EXPECT_EQ(visible.total(), 2u);
	EXPECT_GE(visible.quantile(0.5), 40000u);
	EXPECT_LT(visible.quantile(0.5), 5000000u);
	// Rejected records are not counted as visible.
	udp_send(make_frame({make_fix(23, now, 950000000, 1)}));
	ASSERT_TRUE(pump_until([&] { return ctr.rejected_range == 1; }));
	EXPECT_EQ(visible.total(), 2u);
}

TEST_F(EngineTest, UdpBinaryRecordVerdictsAreCounted) {
	start();
	int64_t now = now_ms();
	auto f = fixes(20, 6, now);
	f[1].lat_e7 = 900000001;   // range
	f[2].ts_ms = now + 120000; // clock (2 min ahead)
	f[3].ts_ms = now - 3600000; // clock (1 h behind)
	f[4].reserved = 1;         // malformed
	udp_send(make_frame(f));
	ASSERT_TRUE(pump_until([&] { return ctr.received_messages == 1 && ctr.udp_datagrams == 1; }));
	EXPECT_EQ(ctr.accepted_records, 2u);
	EXPECT_EQ(ctr.rejected_range, 1u);
	EXPECT_EQ(ctr.rejected_clock, 2u);
	EXPECT_EQ(ctr.rejected_malformed, 1u);
	auto r = ring_contents();
	ASSERT_EQ(r.size(), 2u);
	EXPECT_EQ(r[0].fix.driver_id, 20u);
	EXPECT_EQ(r[1].fix.driver_id, 25u);
	LiveView v;
	EXPECT_FALSE(live.get(21, v)); // rejected records never reach the live state
	EXPECT_FALSE(live.get(22, v));
}

TEST_F(EngineTest, UdpSignedMessageRejectedWithAuth) {
	start();
	udp_send(make_frame(fixes(30, 2, now_ms()), wire::kFlagSigned, 0, 1, 1));
	ASSERT_TRUE(pump_until([&] { return ctr.udp_datagrams == 1; }));
	EXPECT_EQ(ctr.accepted_records, 0u);
	EXPECT_GE(ctr.rejected_auth, 1u);
	EXPECT_EQ(ring.size(), 0u);
}

TEST_F(EngineTest, UdpJsonDatagramWithSeveralLines) {
	start();
	int64_t now = now_ms();
	std::string d = json_line(41, 12.9716, 77.5946, ",\"ts\":" + std::to_string(now - 10) + ",\"status\":\"busy\"") +
	                "\n" + json_line(42, -33.8688, 151.2093) + "\r\n" + "\n" + "{not json}\n" +
	                json_line(43, 95, 0) + "\n" + json_line(44, 1, 2, ",\"ts\":\"2001-01-01T00:00:00Z\"") + "\n" +
	                json_line(45, 10, 20); // last line without newline
	udp_send(d);
	ASSERT_TRUE(pump_until([&] { return ctr.udp_datagrams == 1; }));
	EXPECT_EQ(ctr.received_messages, 6u); // one per non-blank line
	EXPECT_EQ(ctr.accepted_records, 3u);
	EXPECT_EQ(ctr.rejected_malformed, 1u);
	EXPECT_EQ(ctr.rejected_range, 1u);
	EXPECT_EQ(ctr.rejected_clock, 1u);
	auto r = ring_contents();
	ASSERT_EQ(r.size(), 3u);
	EXPECT_EQ(r[0].fix.driver_id, 41u);
	EXPECT_EQ(r[1].fix.driver_id, 42u);
	EXPECT_EQ(r[2].fix.driver_id, 45u);
	LiveView v;
	ASSERT_TRUE(live.get(41, v));
	EXPECT_EQ(v.ts_ms, now - 10);
	EXPECT_EQ(v.lat_e7, 129716000);
	EXPECT_EQ(v.status, kStatusBusy);
	ASSERT_TRUE(live.get(42, v));
	EXPECT_EQ(v.lon_e7, 1512093000);
	// No ts: the time of receipt.
	EXPECT_GE(v.ts_ms, now - 1000);
	EXPECT_LE(v.ts_ms, now_ms());
	EXPECT_FALSE(live.get(43, v));
	EXPECT_FALSE(live.get(44, v));
}

TEST_F(EngineTest, UdpGarbageAndTruncatedDatagramsRejected) {
	start();
	auto good = make_frame(fixes(50, 2, now_ms()));
	std::vector<std::vector<uint8_t>> bad;
	bad.push_back({'h', 'e', 'l', 'l', 'o'});
	bad.push_back(std::vector<uint8_t>(good.begin(), good.end() - 1));         // truncated
	bad.push_back(std::vector<uint8_t>(good.begin(), good.begin() + 16));      // header only
	bad.push_back(std::vector<uint8_t>(good.begin(), good.begin() + 7));       // partial header
	auto longer = good;
	longer.push_back(0);
	bad.push_back(longer);                                                      // one byte too many
	auto two = good;
	two.insert(two.end(), good.begin(), good.end());
	bad.push_back(two);                                                         // two messages in one datagram
	auto magic = good;
	magic[0] = 0;
	bad.push_back(magic);
	auto version = good;
	version[2] = 2;
	bad.push_back(version);
	auto flags = good;
	flags[3] = 0x80;
	bad.push_back(flags);
	auto count = good;
	count[5] = 3; // says 3 records, carries 2
	bad.push_back(count);
	auto signed_no_tag = good;
	signed_no_tag[3] = wire::kFlagSigned; // needs 16 more bytes
	bad.push_back(signed_no_tag);
	bad.push_back({0x00});
	for (auto &b : bad)
		udp_send(b);
	ASSERT_TRUE(pump_until([&] { return ctr.udp_datagrams == bad.size(); }));
	EXPECT_EQ(ctr.received_messages, bad.size());
	EXPECT_EQ(ctr.rejected_malformed, bad.size());
	EXPECT_EQ(ctr.accepted_records, 0u);
	EXPECT_EQ(ring.size(), 0u);
	EXPECT_EQ(live.size(), 0u);
	// The good one still works afterwards.
	udp_send(good);
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 2; }));
	EXPECT_EQ(ring.size(), 2u);
}

TEST_F(EngineTest, UdpEmptyDatagramDoesNotCrash) {
	start();
	udp_send(std::vector<uint8_t>{});
	udp_send(make_frame(fixes(60, 1, now_ms())));
	ASSERT_TRUE(pump_until([&] { return ctr.udp_datagrams == 2; }));
	EXPECT_EQ(ctr.accepted_records, 1u);
	EXPECT_EQ(ring.size(), 1u);
}

TEST_F(EngineTest, UdpHeaderReservedRejectsWholeMessage) {
	start();
	udp_send(make_frame(fixes(70, 3, now_ms()), 0, 1));
	ASSERT_TRUE(pump_until([&] { return ctr.udp_datagrams == 1; }));
	EXPECT_EQ(ctr.accepted_records, 0u);
	EXPECT_GE(ctr.rejected_malformed, 1u);
	EXPECT_EQ(ring.size(), 0u);
}

TEST_F(EngineTest, UdpRingFullDropsAndCounts) {
	start(/*ring_cap=*/4);
	udp_send(make_frame(fixes(80, 6, now_ms())));
	ASSERT_TRUE(pump_until([&] { return ctr.udp_datagrams == 1; }));
	EXPECT_EQ(ctr.accepted_records, 4u);
	EXPECT_EQ(ctr.dropped_ring_full, 2u);
	EXPECT_EQ(ring.size(), 4u);
	// JSON lines are dropped the same way.
	udp_send(json_line(90, 1, 2) + "\n" + json_line(91, 1, 2));
	ASSERT_TRUE(pump_until([&] { return ctr.udp_datagrams == 2; }));
	EXPECT_EQ(ctr.dropped_ring_full, 4u);
	EXPECT_EQ(ctr.accepted_records, 4u);
	// After the flusher makes room, records flow again.
	flush();
	udp_send(make_frame(fixes(100, 2, now_ms())));
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 6; }));
	EXPECT_EQ(ctr.dropped_ring_full, 4u);
}

TEST_F(EngineTest, UdpLateFixCounted) {
	start();
	int64_t now = now_ms();
	auto a = make_fix(110, now, 10, 20);
	auto b = make_fix(110, now - 5000, 30, 40); // older: history only
	auto c = make_fix(110, now, 50, 60);        // same ts: not newer either
	udp_send(make_frame({a, b, c}));
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 3; }));
	EXPECT_EQ(ctr.late_records, 2u);
	auto r = ring_contents();
	ASSERT_EQ(r.size(), 3u); // late records still go to history
	EXPECT_EQ(r[0].flags & kPingLate, 0);
	EXPECT_NE(r[1].flags & kPingLate, 0);
	EXPECT_NE(r[2].flags & kPingLate, 0);
	EXPECT_EQ(r[1].fix.lat_e7, 30);
	LiveView v;
	ASSERT_TRUE(live.get(110, v));
	EXPECT_EQ(v.lat_e7, 10);
	EXPECT_EQ(v.ts_ms, now);
}

TEST_F(EngineTest, LiveTableFullStillGoesToHistory) {
	start(1024, /*drivers=*/2);
	udp_send(make_frame(fixes(120, 3, now_ms())));
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 3; }));
	EXPECT_EQ(ctr.live_full, 1u);
	EXPECT_EQ(ring.size(), 3u);
	EXPECT_EQ(live.size(), 2u);
}

TEST_F(EngineTest, UnsignedFromNonLoopbackPeerRejected) {
	std::string ip = non_loopback_ipv4();
	if (ip.empty())
		GTEST_SKIP() << "no non-loopback IPv4 address";
	start(1024, 1000, {ip});
	udp_send(make_frame(fixes(130, 2, now_ms())), ip.c_str(), ip.c_str());
	udp_send(json_line(131, 1, 2), ip.c_str());
	ASSERT_TRUE(pump_until([&] { return ctr.udp_datagrams == 2; }));
	EXPECT_EQ(ctr.accepted_records, 0u);
	EXPECT_GE(ctr.rejected_auth, 2u); // at least one per message
	EXPECT_EQ(ring.size(), 0u);
}

// ---- TCP binary --------------------------------------------------------------

TEST_F(EngineTest, TcpAcksOnlyAfterCommitInOrderWithCounts) {
	start();
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	int64_t now = now_ms();
	auto m1 = make_frame(fixes(200, 3, now));
	auto f2 = fixes(210, 4, now);
	f2[1].lat_e7 = -900000001; // out of range
	f2[3].heading_cd = 36000;  // out of range
	auto m2 = make_frame(f2);
	auto m3 = make_frame(fixes(220, 2, now), wire::kFlagSigned); // refused: no keys
	auto m4 = make_frame(fixes(230, 1, now));
	std::vector<uint8_t> all;
	for (auto *m : {&m1, &m2, &m3, &m4})
		all.insert(all.end(), m->begin(), m->end());
	tcp_send(fd, all);
	ASSERT_TRUE(pump_until([&] { return ctr.received_messages == 4; }));
	EXPECT_EQ(ctr.accepted_records, 6u);
	EXPECT_EQ(ctr.rejected_range, 2u);
	EXPECT_GE(ctr.rejected_auth, 1u);
	EXPECT_EQ(ctr.tcp_connections_accepted, 1u);
	EXPECT_EQ(ring.size(), 6u);
	// Nothing is committed yet: no ACK at all.
	Rx rx = quiet(fd);
	EXPECT_EQ(rx.data.size(), 0u);
	EXPECT_FALSE(rx.eof);
	eng->send_acks(); // still nothing committed
	rx = quiet(fd, 30);
	EXPECT_EQ(rx.data.size(), 0u);

	// Commit message 1's records only: exactly ACK 1.
	ASSERT_EQ(flush(3), 3u);
	rx = read_n(fd, 12);
	auto a = acks(rx.data);
	ASSERT_EQ(a.size(), 1u);
	expect_ack(a[0], wire::kAckAll, 1, 3);
	EXPECT_EQ(quiet(fd, 50).data.size(), 0u);

	// Commit one more record: message 2 is still partly uncommitted.
	ASSERT_EQ(flush(1), 1u);
	EXPECT_EQ(quiet(fd, 50).data.size(), 0u);

	// Commit the rest: ACKs 2, 3, 4 in order.
	flush();
	rx = read_n(fd, 36);
	a = acks(rx.data);
	ASSERT_EQ(a.size(), 3u);
	expect_ack(a[0], wire::kAckSome, 2, 2);
	expect_ack(a[1], wire::kAckRejected, 3, 0);
	expect_ack(a[2], wire::kAckAll, 4, 1);
	EXPECT_FALSE(rx.eof);
	ASSERT_EQ(flushed.size(), 6u);
	EXPECT_EQ(flushed[5].fix.driver_id, 230u);

	// The connection stays open for more.
	tcp_send(fd, make_frame(fixes(240, 1, now_ms())));
	ASSERT_TRUE(pump_until([&] { return ctr.received_messages == 5; }));
	flush();
	a = acks(read_n(fd, 12).data);
	ASSERT_EQ(a.size(), 1u);
	expect_ack(a[0], wire::kAckAll, 5, 1);
}

TEST_F(EngineTest, TcpHeaderReservedGetsRejectedAckAndConnectionStays) {
	start();
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	tcp_send(fd, make_frame(fixes(300, 2, now_ms()), 0, 0x0101));
	tcp_send(fd, make_frame(fixes(302, 1, now_ms())));
	ASSERT_TRUE(pump_until([&] { return ctr.received_messages == 2; }));
	flush();
	auto a = acks(read_n(fd, 24).data);
	ASSERT_EQ(a.size(), 2u);
	expect_ack(a[0], wire::kAckRejected, 1, 0);
	expect_ack(a[1], wire::kAckAll, 2, 1);
	EXPECT_EQ(ctr.tcp_connections_closed_bad_frame, 0u);
}

TEST_F(EngineTest, TcpFramesSplitAcrossWrites) {
	start();
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	auto m1 = make_frame(fixes(310, 5, now_ms()));
	auto m2 = make_frame(fixes(320, 1, now_ms()));
	std::vector<uint8_t> all = m1;
	all.insert(all.end(), m2.begin(), m2.end());
	// One byte at a time, with the engine running in between.
	for (size_t i = 0; i < all.size(); i++) {
		tcp_send(fd, &all[i], 1);
		if (i % 7 == 0)
			eng->run_once(false);
	}
	ASSERT_TRUE(pump_until([&] { return ctr.received_messages == 2; }));
	EXPECT_EQ(ctr.accepted_records, 6u);
	EXPECT_EQ(ctr.rejected_malformed, 0u);
	flush();
	auto a = acks(read_n(fd, 24).data);
	ASSERT_EQ(a.size(), 2u);
	expect_ack(a[0], wire::kAckAll, 1, 5);
	expect_ack(a[1], wire::kAckAll, 2, 1);
}

TEST_F(EngineTest, TcpBadFrameClosesAfterEarlierAcks) {
	start();
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	auto m1 = make_frame(fixes(400, 2, now_ms()));
	auto m2 = make_frame(fixes(410, 1, now_ms()));
	std::vector<uint8_t> all = m1;
	all.insert(all.end(), m2.begin(), m2.end());
	const uint8_t junk[] = {'X', 'Y', 'Z', 0, 1, 2, 3};
	all.insert(all.end(), junk, junk + sizeof junk);
	tcp_send(fd, all);
	ASSERT_TRUE(pump_until([&] { return ctr.tcp_connections_closed_bad_frame == 1; }));
	EXPECT_EQ(ctr.accepted_records, 3u);
	EXPECT_EQ(ctr.rejected_malformed, 1u);
	// Not closed yet: ACKs for messages 1 and 2 are owed.
	Rx rx = quiet(fd);
	EXPECT_EQ(rx.data.size(), 0u);
	EXPECT_FALSE(rx.eof);
	EXPECT_FALSE(rx.reset);
	EXPECT_EQ(eng->connections(), 1u);
	flush();
	rx = read_to_close(fd);
	EXPECT_TRUE(rx.eof || rx.reset);
	auto a = acks(rx.data);
	ASSERT_EQ(a.size(), 2u); // and no ACK for the bad frame
	expect_ack(a[0], wire::kAckAll, 1, 2);
	expect_ack(a[1], wire::kAckAll, 2, 1);
	ASSERT_TRUE(pump_until([&] { return eng->connections() == 0; }));
}

TEST_F(EngineTest, TcpBadFrameFirstClosesAtOnce) {
	start();
	for (std::vector<uint8_t> bad : {std::vector<uint8_t>{'G', 'E', 'T', ' ', '/'}, std::vector<uint8_t>{'L', 'T', 2},
	                                 std::vector<uint8_t>{'L', 'T', 1, 0, 0, 0}}) {
		int fd = tcp_connect();
		ASSERT_GE(fd, 0);
		tcp_send(fd, bad);
		Rx rx = read_to_close(fd);
		EXPECT_TRUE(rx.eof || rx.reset);
		EXPECT_EQ(rx.data.size(), 0u);
	}
	EXPECT_EQ(ctr.tcp_connections_closed_bad_frame, 3u);
	EXPECT_EQ(ctr.accepted_records, 0u);
	ASSERT_TRUE(pump_until([&] { return eng->connections() == 0; }));
}

TEST_F(EngineTest, TcpBadFrameWithMoreDataBehindStillDeliversEarlierAcks) {
	// The client pipelines: a good message, a bad frame, and lots more bytes
	// the server will never read. The ACK owed for message 1 must still reach it.
	start();
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	std::vector<uint8_t> all = make_frame(fixes(420, 1, now_ms()));
	all.push_back('?');
	all.insert(all.end(), 100000, uint8_t('j'));
	tcp_send(fd, all);
	ASSERT_TRUE(pump_until([&] { return ctr.tcp_connections_closed_bad_frame == 1; }));
	flush();
	Rx rx = read_to_close(fd);
	auto a = acks(rx.data);
	ASSERT_EQ(a.size(), 1u);
	expect_ack(a[0], wire::kAckAll, 1, 1);
}

TEST_F(EngineTest, TcpEofAfterSendStillGetsAcks) {
	start();
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	tcp_send(fd, make_frame(fixes(430, 2, now_ms())));
	shutdown(fd, SHUT_WR);
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 2; }));
	EXPECT_EQ(quiet(fd, 50).data.size(), 0u);
	flush();
	Rx rx = read_to_close(fd);
	auto a = acks(rx.data);
	ASSERT_EQ(a.size(), 1u);
	expect_ack(a[0], wire::kAckAll, 1, 2);
	EXPECT_TRUE(rx.eof);
	ASSERT_TRUE(pump_until([&] { return eng->connections() == 0; }));
}

TEST_F(EngineTest, TcpRingFullPausesWithoutDropping) {
	start(/*ring_cap=*/8);
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	int64_t now = now_ms();
	auto m1 = make_frame(fixes(500, 5, now));
	auto m2 = make_frame(fixes(510, 5, now)); // does not fit behind m1 in 8 slots
	auto m3 = make_frame(fixes(520, 1, now));
	std::vector<uint8_t> all = m1;
	all.insert(all.end(), m2.begin(), m2.end());
	all.insert(all.end(), m3.begin(), m3.end());
	tcp_send(fd, all);
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 5; }));
	pump_for(100);
	// Paused: nothing dropped, nothing more taken, m2 waits whole.
	EXPECT_EQ(ctr.accepted_records, 5u);
	EXPECT_EQ(ctr.received_messages, 1u);
	EXPECT_EQ(ctr.dropped_ring_full, 0u);
	EXPECT_EQ(ring.size(), 5u);
	// Other senders are not stalled: UDP into the remaining room still works.
	udp_send(make_frame(fixes(530, 1, now)));
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 6; }));
	EXPECT_EQ(ctr.received_messages, 2u);

	// The flusher commits: ACK 1 comes, and the paused input is processed.
	flush();
	auto a = acks(read_n(fd, 12).data);
	ASSERT_EQ(a.size(), 1u);
	expect_ack(a[0], wire::kAckAll, 1, 5);
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 12; }));
	EXPECT_EQ(ctr.dropped_ring_full, 0u);
	flush();
	a = acks(read_n(fd, 24).data);
	ASSERT_EQ(a.size(), 2u);
	expect_ack(a[0], wire::kAckAll, 2, 5);
	expect_ack(a[1], wire::kAckAll, 3, 1);
	// Every record went through, in order per connection.
	std::vector<uint64_t> tcp_ids;
	for (auto &p : flushed)
		if (p.fix.driver_id != 530)
			tcp_ids.push_back(p.fix.driver_id);
	std::vector<uint64_t> want = {500, 501, 502, 503, 504, 510, 511, 512, 513, 514, 520};
	EXPECT_EQ(tcp_ids, want);
}

TEST_F(EngineTest, TcpFlowsThroughARingSmallerThanTheTraffic) {
	// Many messages through a tiny ring: pause / resume many times, nothing lost.
	start(/*ring_cap=*/16);
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	const int kMessages = 200;
	std::vector<uint8_t> all;
	int64_t now = now_ms();
	for (int m = 0; m < kMessages; m++) {
		auto f = make_frame(fixes(1000 + uint64_t(m) * 10, 1 + m % 10, now));
		all.insert(all.end(), f.begin(), f.end());
	}
	size_t sent = 0;
	std::string got;
	auto deadline = Clock::now() + std::chrono::seconds(5);
	while (got.size() < size_t(kMessages) * 12 && Clock::now() < deadline) {
		if (sent < all.size()) {
			ssize_t k = send(fd, all.data() + sent, std::min<size_t>(all.size() - sent, 3000), MSG_NOSIGNAL);
			if (k > 0)
				sent += size_t(k);
		}
		eng->run_once(false);
		flush();
		Rx rx;
		drain(fd, rx);
		got += rx.data;
		ASSERT_FALSE(rx.eof || rx.reset);
	}
	auto a = acks(got);
	ASSERT_EQ(a.size(), size_t(kMessages));
	uint64_t records = 0;
	for (int m = 0; m < kMessages; m++) {
		expect_ack(a[size_t(m)], wire::kAckAll, uint32_t(m + 1), uint32_t(1 + m % 10));
		records += uint64_t(1 + m % 10);
	}
	EXPECT_EQ(ctr.accepted_records, records);
	EXPECT_EQ(ctr.dropped_ring_full, 0u);
	ASSERT_EQ(flushed.size(), records);
	size_t i = 0;
	for (int m = 0; m < kMessages; m++)
		for (int k = 0; k < 1 + m % 10; k++)
			EXPECT_EQ(flushed[i++].fix.driver_id, 1000 + uint64_t(m) * 10 + uint64_t(k));
}

// ---- TCP JSON ------------------------------------------------------------------

TEST_F(EngineTest, TcpJsonOkOnlyAfterCommit) {
	start();
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	tcp_send(fd, json_line(600, 1, 2) + "\n" + "{broken\n" + json_line(601, 3, 4) + "\r\n" + "\n");
	ASSERT_TRUE(pump_until([&] { return ctr.received_messages == 3; }));
	EXPECT_EQ(ctr.accepted_records, 2u);
	EXPECT_EQ(ctr.rejected_malformed, 1u);
	EXPECT_EQ(quiet(fd).data, "");
	flush(1);
	// Line 1 is committed, and line 2 (rejected) has nothing to commit; line 3
	// is not committed yet. So "ok 1" or "ok 2" may come now, or nothing yet,
	// but never "ok 3".
	std::string text = quiet(fd, 50).data;
	EXPECT_TRUE(text == "" || text == "ok 1\n" || text == "ok 2\n") << text;
	flush();
	// "ok N" counts the lines processed so far (blank lines are not lines).
	text += read_n(fd, 5).data;
	EXPECT_TRUE(text == "ok 3\n" || text == "ok 1\nok 3\n" || text == "ok 2\nok 3\n") << text;

	// More lines: the count goes on.
	tcp_send(fd, json_line(602, 5, 6) + "\n" + json_line(603, 95, 6) + "\n");
	ASSERT_TRUE(pump_until([&] { return ctr.received_messages == 5; }));
	EXPECT_EQ(ctr.rejected_range, 1u);
	flush();
	EXPECT_EQ(read_n(fd, 5).data, "ok 5\n");
	LiveView v;
	ASSERT_TRUE(live.get(602, v));
	EXPECT_EQ(v.lat_e7, 50000000);
}

TEST_F(EngineTest, TcpJsonOverLongLineSkippedConnectionStays) {
	start();
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	std::string lng = "{\"driver_id\":700,\"x\":\"" + std::string(40000, 'x') + "\",\"lat\":1,\"lon\":2}";
	tcp_send(fd, json_line(699, 1, 2) + "\n" + lng + "\n" + json_line(701, 1, 2) + "\n");
	ASSERT_TRUE(pump_until([&] { return ctr.received_messages == 3; }));
	EXPECT_EQ(ctr.rejected_malformed, 1u); // the over-long line
	EXPECT_EQ(ctr.accepted_records, 2u);
	LiveView v;
	EXPECT_TRUE(live.get(699, v));
	EXPECT_FALSE(live.get(700, v));
	EXPECT_TRUE(live.get(701, v)); // the line after the long one is not lost
	flush();
	EXPECT_EQ(read_n(fd, 5).data, "ok 3\n");
}

TEST_F(EngineTest, UdpJsonOverLongLineRejectedOthersKept) {
	start();
	// Over TCP a line is limited to 16,383 bytes; a datagram holds up to 64 KB,
	// so the same limit is applied there, line by line.
	std::string too_long = "{\"driver_id\":711,\"x\":\"" + std::string(16400, 'x') + "\",\"lat\":1,\"lon\":2}";
	std::string just = "{\"driver_id\":712,\"x\":\"" + std::string(16000, 'y') + "\",\"lat\":1,\"lon\":2}";
	ASSERT_LE(just.size(), 16383u);
	udp_send(json_line(710, 1, 2) + "\n" + too_long + "\n" + just + "\n");
	ASSERT_TRUE(pump_until([&] { return ctr.received_messages == 3; }));
	EXPECT_EQ(ctr.rejected_malformed, 1u);
	EXPECT_EQ(ctr.accepted_records, 2u);
	LiveView v;
	EXPECT_TRUE(live.get(710, v));
	EXPECT_FALSE(live.get(711, v));
	EXPECT_TRUE(live.get(712, v));
}

TEST_F(EngineTest, TcpJsonLineSplitAcrossWrites) {
	start();
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	std::string s = json_line(710, 1, 2) + "\n" + json_line(711, 3, 4) + "\n";
	for (size_t i = 0; i < s.size(); i += 5) {
		tcp_send(fd, s.substr(i, 5));
		eng->run_once(false);
	}
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 2; }));
	EXPECT_EQ(ctr.rejected_malformed, 0u);
	flush();
	EXPECT_EQ(read_n(fd, 5).data, "ok 2\n");
}

// ---- connections -----------------------------------------------------------------

TEST_F(EngineTest, ConnectionLimitRefusesExtraConnections) {
	cfg.max_connections = 2;
	start();
	int a = tcp_connect(), b = tcp_connect();
	ASSERT_GE(a, 0);
	ASSERT_GE(b, 0);
	ASSERT_TRUE(pump_until([&] { return ctr.tcp_connections_accepted == 2; }));
	int c = tcp_connect(); // the kernel accepts it into the backlog...
	ASSERT_GE(c, 0);
	ASSERT_TRUE(pump_until([&] { return ctr.tcp_connections_refused == 1; }));
	Rx rx = read_to_close(c); // ...and the engine refuses it
	EXPECT_TRUE(rx.eof || rx.reset);
	EXPECT_EQ(eng->connections(), 2u);
	// The accepted ones work.
	tcp_send(a, make_frame(fixes(800, 1, now_ms())));
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 1; }));
	flush();
	auto acks_a = acks(read_n(a, 12).data);
	ASSERT_EQ(acks_a.size(), 1u);
	expect_ack(acks_a[0], wire::kAckAll, 1, 1);
	// When one goes away, a new one is taken.
	::close(b);
	fds.erase(std::find(fds.begin(), fds.end(), b));
	ASSERT_TRUE(pump_until([&] { return eng->connections() == 1; }));
	int d = tcp_connect();
	ASSERT_GE(d, 0);
	ASSERT_TRUE(pump_until([&] { return ctr.tcp_connections_accepted == 3; }));
	tcp_send(d, make_frame(fixes(810, 1, now_ms())));
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 2; }));
	flush();
	auto acks_d = acks(read_n(d, 12).data);
	ASSERT_EQ(acks_d.size(), 1u);
	expect_ack(acks_d[0], wire::kAckAll, 1, 1); // numbering is per connection
	EXPECT_EQ(ctr.tcp_connections_refused, 1u);
}

TEST_F(EngineTest, ManyIdleConnectionsDoNotStopOthers) {
	start();
	std::vector<int> idle;
	auto frame = make_frame(fixes(900, 1, now_ms()));
	for (int i = 0; i < 300; i++) {
		int fd = tcp_connect();
		ASSERT_GE(fd, 0);
		idle.push_back(fd);
		// Some are idle mid-frame, some mid-line, some silent.
		if (i % 3 == 1)
			tcp_send(fd, frame.data(), 20);
		else if (i % 3 == 2)
			tcp_send(fd, std::string("{\"driver_id\":1,"));
	}
	ASSERT_TRUE(pump_until([&] { return ctr.tcp_connections_accepted == 300; }, 5000));
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	auto t0 = Clock::now();
	for (uint32_t m = 1; m <= 5; m++) {
		tcp_send(fd, make_frame(fixes(1000 + m, 1, now_ms())));
		ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == m; }));
		flush();
		auto a = acks(read_n(fd, 12).data);
		ASSERT_EQ(a.size(), 1u);
		expect_ack(a[0], wire::kAckAll, m, 1);
	}
	EXPECT_LT(Clock::now() - t0, std::chrono::seconds(1));
	EXPECT_EQ(eng->connections(), 301u);
	EXPECT_EQ(ctr.rejected_malformed, 0u);
	// The idle ones can still finish what they started.
	tcp_send(idle[1], frame.data() + 20, frame.size() - 20);
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 6; }));
}

TEST_F(EngineTest, IdleConnectionsAreClosedByHousekeeping) {
	cfg.idle_timeout_s = 1;
	start();
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	ASSERT_TRUE(pump_until([&] { return eng->connections() == 1; }));
	eng->housekeeping();
	EXPECT_EQ(eng->connections(), 1u); // not idle long enough yet
	ASSERT_TRUE(pump_until(
	    [&] {
		    eng->housekeeping();
		    return eng->connections() == 0;
	    },
	    2500));
	EXPECT_EQ(ctr.tcp_connections_closed_idle, 1u);
	Rx rx = read_to_close(fd);
	EXPECT_TRUE(rx.eof || rx.reset);
}

TEST_F(EngineTest, OnlyAcceptedInputKeepsAConnectionFromIdling) {
	cfg.idle_timeout_s = 1;
	start();
	int junk = tcp_connect(), good = tcp_connect();
	ASSERT_GE(junk, 0);
	ASSERT_GE(good, 0);
	ASSERT_TRUE(pump_until([&] { return eng->connections() == 2; }));
	// For 1.6 s: every 100 ms a JSON line that fails validation on one, a
	// valid fix on the other.
	int sent_junk = 0;
	for (int i = 0; i < 16; i++) {
		if (ctr.tcp_connections_closed_idle == 0) {
			tcp_send(junk, std::string(R"({"driver_id":0,"lat":1,"lon":2})" "\n"));
			sent_junk++;
		}
		tcp_send(good, std::string(R"({"driver_id":77,"lat":1,"lon":2})" "\n"));
		pump_for(100);
		flush();
		eng->housekeeping();
	}
	EXPECT_GE(sent_junk, 9); // it kept sending until it was closed, a second in
	EXPECT_EQ(eng->connections(), 1u);
	EXPECT_EQ(ctr.tcp_connections_closed_idle, 1u);
	EXPECT_EQ(ctr.rejected_range, uint64_t(sent_junk));
	Rx rx = read_to_close(junk);
	EXPECT_TRUE(rx.eof || rx.reset);
	// The other one is still served.
	tcp_send(good, std::string(R"({"driver_id":77,"lat":1,"lon":3})" "\n"));
	ASSERT_TRUE(pump_until([&] { return flush() > 0; }));
	EXPECT_EQ(eng->connections(), 1u);
}

// ---- ingest queue -----------------------------------------------------------------

// An order's status change (no fix): the live status moves, and a register
// record goes to the ring for livetrack.drivers; nothing counts as received.
TEST_F(EngineTest, DrainIngestAppliesStatusOnlyChanges) {
	start();
	int64_t now = now_ms();
	Ping p{};
	p.fix = make_fix(1200, now, 50, 60);
	p.received_us = 1;
	ASSERT_TRUE(ingest.push(p));
	eng->drain_ingest();
	flush();
	Ping s{};
	s.fix.driver_id = 1200;
	s.fix.status = kStatusBusy;
	s.fix.ts_ms = now + 5;
	s.flags = kPingStatusOnly;
	ASSERT_TRUE(ingest.push(s));
	s.fix.driver_id = 1201; // unknown to the live state: livetrack.drivers only
	ASSERT_TRUE(ingest.push(s));
	eng->drain_ingest();
	EXPECT_EQ(ingest.size(), 0u);
	LiveView v;
	ASSERT_TRUE(live.get(1200, v));
	EXPECT_EQ(v.status, kStatusBusy);
	EXPECT_EQ(v.lat_e7, 50); // the position stays
	EXPECT_FALSE(live.get(1201, v));
	auto r = ring_contents();
	ASSERT_EQ(r.size(), 2u);
	for (size_t i = 0; i < 2; i++) {
		EXPECT_EQ(r[i].fix.driver_id, 1200u + i);
		EXPECT_EQ(r[i].fix.status, kStatusBusy);
		EXPECT_EQ(r[i].flags, kPingStatusOnly | kPingRegister);
	}
	EXPECT_EQ(live.size(), 1u);
	EXPECT_EQ(ctr.received_messages, 1u);
	EXPECT_EQ(ctr.accepted_records, 1u);
}

TEST_F(EngineTest, DrainIngestMovesRecordsOntoTheRing) {
	start(/*ring_cap=*/4);
	int64_t now = now_ms();
	for (int i = 0; i < 6; i++) {
		Ping p{};
		p.fix = make_fix(1100 + uint64_t(i), now, i, -i);
		p.received_us = 424242 + i;
		ASSERT_TRUE(ingest.push(p));
	}
	eng->drain_ingest();
	// The ring has room for 4: those move, the rest wait in the ingest queue.
	EXPECT_EQ(ring.size(), 4u);
	EXPECT_EQ(ingest.size(), 2u);
	EXPECT_EQ(ctr.received_messages, 4u);
	EXPECT_EQ(ctr.accepted_records, 4u);
	EXPECT_EQ(ctr.dropped_ring_full, 0u);
	auto r = ring_contents();
	for (int i = 0; i < 4; i++) {
		EXPECT_EQ(r[size_t(i)].fix.driver_id, 1100u + uint64_t(i));
		EXPECT_EQ(r[size_t(i)].received_us, 424242 + i);
		EXPECT_TRUE(r[size_t(i)].flags & kPingRegister);
	}
	LiveView v;
	ASSERT_TRUE(live.get(1103, v));
	EXPECT_EQ(v.lat_e7, 3);
	EXPECT_FALSE(live.get(1104, v));
	flush();
	eng->drain_ingest();
	EXPECT_EQ(ingest.size(), 0u);
	EXPECT_EQ(ring.size(), 2u);
	EXPECT_EQ(ctr.accepted_records, 6u);
	EXPECT_TRUE(live.get(1105, v));
	// run_once drains it too.
	Ping p{};
	p.fix = make_fix(1200, now, 1, 1);
	ASSERT_TRUE(ingest.push(p));
	eng->run_once(false);
	EXPECT_EQ(ingest.size(), 0u);
	EXPECT_EQ(ctr.accepted_records, 7u);
}

TEST_F(EngineTest, IngestAcksTcpInOrderWithOtherProducers) {
	// A TCP message's ACK waits for everything that was on the ring before it.
	start();
	int64_t now = now_ms();
	Ping p{};
	p.fix = make_fix(1300, now, 1, 1);
	ASSERT_TRUE(ingest.push(p));
	eng->drain_ingest();
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	tcp_send(fd, make_frame(fixes(1310, 1, now)));
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 2; }));
	flush(1); // only the ingest record
	EXPECT_EQ(quiet(fd, 50).data.size(), 0u);
	flush();
	auto a = acks(read_n(fd, 12).data);
	ASSERT_EQ(a.size(), 1u);
	expect_ack(a[0], wire::kAckAll, 1, 1);
}

TEST_F(EngineTest, CloseAllAndReopen) {
	start();
	int fd = tcp_connect();
	ASSERT_GE(fd, 0);
	ASSERT_TRUE(pump_until([&] { return eng->connections() == 1; }));
	eng->close_all();
	EXPECT_FALSE(eng->is_open());
	eng->run_once(false); // harmless when closed
	Rx rx = read_to_close(fd);
	EXPECT_TRUE(rx.eof || rx.reset);
	std::string err;
	ASSERT_TRUE(eng->open(cfg, err)) << err;
	udp_send(make_frame(fixes(1400, 1, now_ms())));
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 1; }));
}

// ---- more UDP --------------------------------------------------------------------

TEST_F(EngineTest, DrainReadsEverythingTheKernelHas) {
	// 1,500 datagrams (more than one pass of recvmmsg calls) only fit in the
	// socket if the engine's 32 MB SO_RCVBUF is not capped by a small
	// net.core.rmem_max (Linux's default holds about 500); scripts/test raises it.
	long rmem_max = 0;
	if (FILE *f = std::fopen("/proc/sys/net/core/rmem_max", "r")) {
		if (std::fscanf(f, "%ld", &rmem_max) != 1)
			rmem_max = 0;
		std::fclose(f);
	}
	if (rmem_max < (4L << 20))
		GTEST_SKIP() << "net.core.rmem_max is " << rmem_max << ": too small to hold 1,500 datagrams; "
		             << "scripts/test raises it to 32 MB";
	start(/*ring_cap=*/4096, /*drivers=*/2000);
	const int kDatagrams = 1500;
	int fd = udp_socket();
	fds.push_back(fd);
	sockaddr_in a = addr_of("127.0.0.1", port);
	int64_t now = now_ms();
	for (int i = 0; i < kDatagrams; i++) {
		auto b = make_frame(fixes(5000 + uint64_t(i), 1, now));
		ASSERT_EQ(sendto(fd, b.data(), b.size(), 0, reinterpret_cast<sockaddr *>(&a), sizeof a), ssize_t(b.size()));
	}
	// One call with drain=true empties the socket.
	eng->run_once(true);
	EXPECT_EQ(ctr.udp_datagrams, uint64_t(kDatagrams));
	EXPECT_EQ(ctr.accepted_records, uint64_t(kDatagrams));
	EXPECT_EQ(ring.size(), uint64_t(kDatagrams));
	EXPECT_EQ(live.size(), uint32_t(kDatagrams));
}

TEST_F(EngineTest, Ipv6LoopbackIsTrusted) {
	int probe = socket(AF_INET6, SOCK_DGRAM, 0);
	sockaddr_in6 lo6{};
	lo6.sin6_family = AF_INET6;
	lo6.sin6_addr = in6addr_loopback;
	bool have_v6 = probe >= 0 && bind(probe, reinterpret_cast<sockaddr *>(&lo6), sizeof lo6) == 0;
	if (probe >= 0)
		::close(probe);
	if (!have_v6)
		GTEST_SKIP() << "no IPv6 loopback";
	start(1024, 1000, {"::1"});
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	fds.push_back(fd);
	lo6.sin6_port = htons(uint16_t(port));
	auto b = make_frame(fixes(6000, 2, now_ms()));
	ASSERT_EQ(sendto(fd, b.data(), b.size(), 0, reinterpret_cast<sockaddr *>(&lo6), sizeof lo6), ssize_t(b.size()));
	std::string line = json_line(6010, 1, 2);
	ASSERT_EQ(sendto(fd, line.data(), line.size(), 0, reinterpret_cast<sockaddr *>(&lo6), sizeof lo6),
	          ssize_t(line.size()));
	ASSERT_TRUE(pump_until([&] { return ctr.udp_datagrams == 2; }));
	EXPECT_EQ(ctr.rejected_auth, 0u);
	EXPECT_EQ(ctr.accepted_records, 3u);
}

TEST_F(EngineTest, FlusherWakeOnFirstRecordAndAtHint) {
	cfg.flush_hint = 4;
	start();
	EXPECT_FALSE(eng->take_flusher_wake());
	udp_send(make_frame(fixes(7000, 1, now_ms())));
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 1; }));
	EXPECT_TRUE(eng->take_flusher_wake()); // empty -> non-empty
	EXPECT_FALSE(eng->take_flusher_wake());
	udp_send(make_frame(fixes(7010, 1, now_ms())));
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 2; }));
	EXPECT_FALSE(eng->take_flusher_wake()); // 2 < hint: the flusher's own timer will do
	udp_send(make_frame(fixes(7020, 2, now_ms())));
	ASSERT_TRUE(pump_until([&] { return ctr.accepted_records == 4; }));
	EXPECT_TRUE(eng->take_flusher_wake()); // reached the hint
	EXPECT_FALSE(eng->take_flusher_wake());
}
