// From bytes to verdicts: judge_message, judge_json_line, next_unit, is_json.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/message.hpp"
#include "test_helpers.hpp"

using namespace lt;
using lt_test::make_fix;
using lt_test::make_frame;

namespace {

constexpr int64_t kNow = 1763700000123LL;
const Policy kTrust{AuthMode::LoopbackTrust, {30000, 600000}};
const Policy kOff{AuthMode::Off, {30000, 600000}};
const Policy kRequired{AuthMode::Required, {30000, 600000}};

MessageVerdict judge(const std::vector<uint8_t> &frame, bool loopback, const Policy &p) {
	wire::Header h;
	size_t len = 0;
	EXPECT_EQ(wire::parse_header(frame.data(), frame.size(), h, len), wire::Parse::Ok);
	EXPECT_EQ(len, frame.size());
	MessageVerdict v;
	std::memset(&v, 0xCD, sizeof v); // judge_message must set everything it reports
	judge_message(frame.data(), h, loopback, p, kNow, v);
	return v;
}

std::vector<Fix> good_fixes(int n) {
	std::vector<Fix> v;
	for (int i = 0; i < n; i++)
		v.push_back(make_fix(uint64_t(100 + i), kNow - i, 10000000 * (i % 9), -10000000 * (i % 18)));
	return v;
}

Reject judge_line(const std::string &s, bool loopback, const Policy &p) {
	Fix f;
	return judge_json_line(s.data(), s.size(), loopback, p, kNow, f);
}

const std::string kLine = R"({"driver_id":42,"lat":12.9716,"lon":77.5946,"ts":1763700000123})";

} // namespace

TEST(JudgeMessage, AllGoodFromLoopback) {
	auto fixes = good_fixes(5);
	auto v = judge(make_frame(fixes), true, kTrust);
	EXPECT_EQ(v.message, Reject::None);
	EXPECT_EQ(v.count, 5);
	EXPECT_EQ(v.accepted, 5);
	for (int i = 0; i < 5; i++) {
		EXPECT_EQ(v.record[i], Reject::None) << i;
		EXPECT_TRUE(lt_test::same_fix(v.fix[i], fixes[size_t(i)])) << i;
	}
	EXPECT_EQ(v.ack_status(), wire::kAckAll);
}

TEST(JudgeMessage, MaxCount) {
	auto fixes = good_fixes(64);
	auto v = judge(make_frame(fixes), true, kTrust);
	EXPECT_EQ(v.count, 64);
	EXPECT_EQ(v.accepted, 64);
	EXPECT_TRUE(lt_test::same_fix(v.fix[63], fixes[63]));
	EXPECT_EQ(v.ack_status(), wire::kAckAll);
}

TEST(JudgeMessage, UnsignedFromNonLoopbackRejectedUnderLoopbackTrust) {
	auto v = judge(make_frame(good_fixes(3)), false, kTrust);
	EXPECT_EQ(v.message, Reject::Auth);
	EXPECT_EQ(v.count, 3);
	EXPECT_EQ(v.accepted, 0);
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(v.record[i], Reject::Auth) << i;
	EXPECT_EQ(v.ack_status(), wire::kAckRejected);
}

TEST(JudgeMessage, UnsignedFromAnywhereWhenAuthOff) {
	for (bool lo : {false, true}) {
		auto v = judge(make_frame(good_fixes(3)), lo, kOff);
		EXPECT_EQ(v.message, Reject::None) << lo;
		EXPECT_EQ(v.accepted, 3) << lo;
		EXPECT_EQ(v.ack_status(), wire::kAckAll) << lo;
	}
}

TEST(JudgeMessage, SignedRejectedUnlessAuthOff) {
	// Without a key store no tag can be verified, so signed input is
	// refused wherever authentication is on, even from loopback.
	for (bool lo : {false, true}) {
		auto v = judge(make_frame(good_fixes(2), wire::kFlagSigned, 0, 7, 1), lo, kTrust);
		EXPECT_EQ(v.message, Reject::Auth) << lo;
		EXPECT_EQ(v.accepted, 0) << lo;
		EXPECT_EQ(v.record[0], Reject::Auth);
		EXPECT_EQ(v.record[1], Reject::Auth);
		EXPECT_EQ(v.ack_status(), wire::kAckRejected);
	}
	for (bool lo : {false, true}) {
		auto fixes = good_fixes(2);
		auto v = judge(make_frame(fixes, wire::kFlagSigned, 0, 7, 1), lo, kOff);
		EXPECT_EQ(v.message, Reject::None) << lo;
		EXPECT_EQ(v.accepted, 2) << lo;
		EXPECT_TRUE(lt_test::same_fix(v.fix[1], fixes[1]));
	}
}

TEST(JudgeMessage, RequiredRefusesUnsignedEvenFromLoopbackAndSignedWithoutKeys) {
	for (bool lo : {false, true}) {
		auto v = judge(make_frame(good_fixes(2)), lo, kRequired);
		EXPECT_EQ(v.message, Reject::Auth) << lo;
		EXPECT_EQ(v.accepted, 0) << lo;
		EXPECT_EQ(v.record[1], Reject::Auth) << lo;
		EXPECT_EQ(v.ack_status(), wire::kAckRejected) << lo;
		v = judge(make_frame(good_fixes(2), wire::kFlagSigned, 0, 7, 1), lo, kRequired);
		EXPECT_EQ(v.message, Reject::Auth) << lo;
		EXPECT_EQ(v.accepted, 0) << lo;
	}
}

TEST(JudgeMessage, UnsignedHeaderWithKeyOrSequenceIsMalformed) {
	// key_id and seq are 0 when unsigned; a device that sets them without the
	// SIGNED flag is confused about what it sends.
	for (auto [key_id, seq] : {std::pair<uint32_t, uint32_t>{7, 0}, {0, 1}, {7, 1}}) {
		for (const Policy *p : {&kTrust, &kOff}) {
			auto v = judge(make_frame(good_fixes(3), 0, 0, key_id, seq), true, *p);
			EXPECT_EQ(v.message, Reject::Malformed) << key_id << " " << seq;
			EXPECT_EQ(v.accepted, 0);
			EXPECT_EQ(v.record[2], Reject::Malformed);
			EXPECT_EQ(v.ack_status(), wire::kAckRejected);
		}
	}
}

TEST(JudgeMessage, HeaderReservedMakesWholeMessageMalformed) {
	for (uint16_t reserved : {uint16_t(1), uint16_t(0x8000), uint16_t(0xFFFF)}) {
		for (const Policy *p : {&kTrust, &kOff}) {
			auto v = judge(make_frame(good_fixes(4), 0, reserved), true, *p);
			EXPECT_EQ(v.message, Reject::Malformed) << reserved;
			EXPECT_EQ(v.count, 4);
			EXPECT_EQ(v.accepted, 0);
			for (int i = 0; i < 4; i++)
				EXPECT_EQ(v.record[i], Reject::Malformed) << i;
			EXPECT_EQ(v.ack_status(), wire::kAckRejected);
		}
	}
}

TEST(JudgeMessage, PerRecordVerdicts) {
	auto fixes = good_fixes(8);
	fixes[1].lat_e7 = 900000001;       // range
	fixes[2].driver_id = 0;            // range
	fixes[3].ts_ms = kNow + 30001;     // clock
	fixes[4].reserved = 1;             // malformed
	fixes[5].heading_cd = 36000;       // range
	fixes[6].status = 4;               // range
	fixes[7].ts_ms = kNow - 600000;    // exactly at max_late: fine
	auto v = judge(make_frame(fixes), true, kTrust);
	EXPECT_EQ(v.message, Reject::None);
	EXPECT_EQ(v.count, 8);
	const Reject want[8] = {Reject::None,      Reject::Range, Reject::Range, Reject::Clock,
	                        Reject::Malformed, Reject::Range, Reject::Range, Reject::None};
	for (int i = 0; i < 8; i++) {
		EXPECT_EQ(v.record[i], want[i]) << i;
		EXPECT_TRUE(lt_test::same_fix(v.fix[i], fixes[size_t(i)])) << i;
	}
	EXPECT_EQ(v.accepted, 2);
	EXPECT_EQ(v.ack_status(), wire::kAckSome);
}

TEST(JudgeMessage, AllRecordsBadIsNotAllAccepted) {
	auto fixes = good_fixes(3);
	for (auto &f : fixes)
		f.driver_id = 0;
	auto v = judge(make_frame(fixes), true, kTrust);
	EXPECT_EQ(v.accepted, 0);
	EXPECT_NE(v.ack_status(), wire::kAckAll);
}

TEST(JudgeMessage, AckStatusFromVerdict) {
	MessageVerdict v{};
	v.message = Reject::None;
	v.count = 3;
	v.accepted = 3;
	EXPECT_EQ(v.ack_status(), wire::kAckAll);
	v.accepted = 2;
	EXPECT_EQ(v.ack_status(), wire::kAckSome);
	for (Reject r : {Reject::Malformed, Reject::Auth, Reject::Replay}) {
		v.message = r;
		v.accepted = 0;
		EXPECT_EQ(v.ack_status(), wire::kAckRejected);
	}
}

TEST(JudgeMessage, ClockUsesGivenNow) {
	auto fixes = good_fixes(1);
	fixes[0].ts_ms = kNow;
	auto frame = make_frame(fixes);
	wire::Header h;
	size_t len;
	ASSERT_EQ(wire::parse_header(frame.data(), frame.size(), h, len), wire::Parse::Ok);
	MessageVerdict v;
	judge_message(frame.data(), h, true, kTrust, kNow + 600000, v);
	EXPECT_EQ(v.record[0], Reject::None);
	judge_message(frame.data(), h, true, kTrust, kNow + 600001, v);
	EXPECT_EQ(v.record[0], Reject::Clock);
	judge_message(frame.data(), h, true, kTrust, kNow - 30001, v);
	EXPECT_EQ(v.record[0], Reject::Clock);
}

TEST(JudgeJsonLine, AuthRule) {
	EXPECT_EQ(judge_line(kLine, true, kTrust), Reject::None);
	EXPECT_EQ(judge_line(kLine, false, kTrust), Reject::Auth);
	EXPECT_EQ(judge_line(kLine, false, kOff), Reject::None);
	EXPECT_EQ(judge_line(kLine, true, kOff), Reject::None);
	EXPECT_EQ(judge_line(kLine, true, kRequired), Reject::Auth);
	EXPECT_EQ(judge_line(kLine, false, kRequired), Reject::Auth);
	// Auth is decided before the content is looked at.
	EXPECT_EQ(judge_line("garbage", false, kTrust), Reject::Auth);
	EXPECT_EQ(judge_line("garbage", true, kTrust), Reject::Malformed);
}

TEST(JudgeJsonLine, ValidatesAfterParsing) {
	Fix f;
	std::string s = R"({"driver_id":42,"lat":12.9716,"lon":77.5946})";
	ASSERT_EQ(judge_json_line(s.data(), s.size(), true, kTrust, kNow, f), Reject::None);
	EXPECT_EQ(f.ts_ms, kNow);
	EXPECT_EQ(f.driver_id, 42u);
	EXPECT_EQ(judge_line(R"({"driver_id":42,"lat":95,"lon":0})", true, kTrust), Reject::Range);
	EXPECT_EQ(judge_line(R"({"driver_id":42,"lat":5,"lon":0,"ts":1})", true, kTrust), Reject::Clock);
	EXPECT_EQ(judge_line(R"({"driver_id":0,"lat":5,"lon":0})", true, kTrust), Reject::Range);
}

// ---- next_unit: binary ---------------------------------------------------

TEST(NextUnit, SeveralFramesInOneBuffer) {
	auto a = make_frame(good_fixes(1));
	auto b = make_frame(good_fixes(3));
	auto c = make_frame(good_fixes(2), wire::kFlagSigned);
	std::vector<uint8_t> buf;
	for (auto *f : {&a, &b, &c})
		buf.insert(buf.end(), f->begin(), f->end());
	size_t off = 0;
	for (auto *f : {&a, &b, &c}) {
		size_t len = 0, consumed = 0;
		ASSERT_EQ(next_unit(buf.data() + off, buf.size() - off, false, 1000, len, consumed), Unit::Frame);
		EXPECT_EQ(len, f->size());
		EXPECT_EQ(consumed, f->size());
		EXPECT_EQ(std::memcmp(buf.data() + off, f->data(), len), 0);
		off += consumed;
	}
	EXPECT_EQ(off, buf.size());
	size_t len = 0, consumed = 0;
	EXPECT_EQ(next_unit(buf.data() + off, 0, false, 1000, len, consumed), Unit::NeedMore);
}

TEST(NextUnit, PartialFramesNeedMore) {
	for (auto frame : {make_frame(good_fixes(2)), make_frame(good_fixes(64)), make_frame(good_fixes(1), wire::kFlagSigned)}) {
		for (size_t n = 0; n < frame.size(); n++) {
			size_t len = 0, consumed = 0;
			ASSERT_EQ(next_unit(frame.data(), n, false, 1000, len, consumed), Unit::NeedMore) << n;
		}
		size_t len = 0, consumed = 0;
		ASSERT_EQ(next_unit(frame.data(), frame.size(), false, 1000, len, consumed), Unit::Frame);
		EXPECT_EQ(len, frame.size());
		EXPECT_EQ(consumed, frame.size());
	}
}

TEST(NextUnit, BadFrameIsBad) {
	auto good = make_frame(good_fixes(1));
	std::vector<std::vector<uint8_t>> bads;
	for (int i : {0, 1, 2, 3, 5}) {
		auto b = good;
		b[size_t(i)] = i == 5 ? 65 : (i == 3 ? 0x02 : 0x00); // magic, magic, version, flags, count
		bads.push_back(b);
	}
	bads.push_back({'x'});
	bads.push_back({'{'}); // in binary mode a '{' is just a bad magic byte
	for (auto &b : bads) {
		size_t len = 0, consumed = 0;
		EXPECT_EQ(next_unit(b.data(), b.size(), false, 1000, len, consumed), Unit::Bad);
	}
	// A bad frame after a good one: the good one first.
	std::vector<uint8_t> buf = good;
	buf.insert(buf.end(), {0x00, 0x01, 0x02});
	size_t len = 0, consumed = 0;
	ASSERT_EQ(next_unit(buf.data(), buf.size(), false, 1000, len, consumed), Unit::Frame);
	EXPECT_EQ(consumed, good.size());
	EXPECT_EQ(next_unit(buf.data() + consumed, buf.size() - consumed, false, 1000, len, consumed), Unit::Bad);
}

TEST(NextUnit, HeaderReservedStillFrames) {
	// The reserved field is judged per message, not by the framer: the
	// stream stays in sync and the message gets an ACK (status 2).
	auto f = make_frame(good_fixes(2), 0, 0xFFFF);
	size_t len = 0, consumed = 0;
	EXPECT_EQ(next_unit(f.data(), f.size(), false, 1000, len, consumed), Unit::Frame);
	EXPECT_EQ(consumed, f.size());
}

// ---- next_unit: JSON lines -----------------------------------------------

namespace {
struct Piece {
	Unit u;
	std::string text;
	size_t consumed;
};
std::vector<Piece> split(const std::string &s, size_t max_line) {
	std::vector<Piece> out;
	size_t off = 0;
	for (;;) {
		size_t len = 99999, consumed = 99999;
		auto *p = reinterpret_cast<const uint8_t *>(s.data()) + off;
		Unit u = next_unit(p, s.size() - off, true, max_line, len, consumed);
		if (u == Unit::NeedMore) {
			out.push_back({u, s.substr(off), 0});
			return out;
		}
		EXPECT_GT(consumed, 0u);
		EXPECT_LE(consumed, s.size() - off);
		if (u == Unit::Line) {
			EXPECT_LE(len, consumed);
			out.push_back({u, s.substr(off, len), consumed});
		} else {
			out.push_back({u, "", consumed});
		}
		off += consumed;
		if (off == s.size())
			return out;
	}
}
} // namespace

TEST(NextUnit, JsonLinesLfCrlfBlank) {
	auto v = split("{\"a\":1}\n{\"b\":2}\r\n\n\r\n{\"c\":3}", 1000);
	ASSERT_EQ(v.size(), 5u);
	EXPECT_EQ(v[0].u, Unit::Line);
	EXPECT_EQ(v[0].text, "{\"a\":1}");
	EXPECT_EQ(v[0].consumed, 8u);
	EXPECT_EQ(v[1].u, Unit::Line);
	EXPECT_EQ(v[1].text, "{\"b\":2}");
	EXPECT_EQ(v[1].consumed, 9u);
	EXPECT_EQ(v[2].u, Unit::Line);
	EXPECT_EQ(v[2].text, "");
	EXPECT_EQ(v[2].consumed, 1u);
	EXPECT_EQ(v[3].u, Unit::Line);
	EXPECT_EQ(v[3].text, "");
	EXPECT_EQ(v[3].consumed, 2u);
	EXPECT_EQ(v[4].u, Unit::NeedMore); // no newline yet
	EXPECT_EQ(v[4].text, "{\"c\":3}");
}

TEST(NextUnit, JsonOnlyOneTrailingCrIsStripped) {
	auto v = split("ab\r\r\n", 1000);
	ASSERT_EQ(v.size(), 1u);
	EXPECT_EQ(v[0].text, "ab\r");
	EXPECT_EQ(v[0].consumed, 5u);
}

TEST(NextUnit, JsonLineLengthLimit) {
	const size_t max = 50;
	// Exactly max bytes before the newline: fine.
	auto v = split(std::string(max, 'x') + "\n", max);
	ASSERT_EQ(v.size(), 1u);
	EXPECT_EQ(v[0].u, Unit::Line);
	EXPECT_EQ(v[0].text.size(), max);
	// max bytes and no newline yet: could still be a valid line.
	v = split(std::string(max, 'x'), max);
	ASSERT_EQ(v.size(), 1u);
	EXPECT_EQ(v[0].u, Unit::NeedMore);
	// max+1 bytes with no newline: too long, whatever comes next.
	size_t len = 0, consumed = 0;
	std::string s(max + 1, 'x');
	EXPECT_EQ(next_unit(reinterpret_cast<const uint8_t *>(s.data()), s.size(), true, max, len, consumed), Unit::TooLong);
	EXPECT_GT(consumed, 0u);
	EXPECT_LE(consumed, s.size());
	// max+1 bytes then the newline: too long too.
	s = std::string(max + 1, 'x') + "\n";
	EXPECT_EQ(next_unit(reinterpret_cast<const uint8_t *>(s.data()), s.size(), true, max, len, consumed), Unit::TooLong);
}

namespace {
// What a stream reader does with TooLong (as listener_engine.cpp process()
// does): drop `consumed` bytes, then skip the rest of the over-long line up to
// and including its newline, and go on with the next line.
std::vector<std::string> read_lines_like_the_listener(const std::string &s, size_t max_line) {
	std::vector<std::string> lines;
	size_t off = 0;
	bool skipping = false;
	while (off < s.size()) {
		if (skipping) {
			size_t nl = s.find('\n', off);
			if (nl == std::string::npos)
				break;
			off = nl + 1;
			skipping = false;
			continue;
		}
		size_t len = 0, consumed = 0;
		Unit u = next_unit(reinterpret_cast<const uint8_t *>(s.data()) + off, s.size() - off, true, max_line, len,
		                   consumed);
		if (u == Unit::NeedMore)
			break;
		if (u == Unit::TooLong) {
			lines.push_back("<too long>");
			skipping = true;
		} else {
			lines.push_back(s.substr(off, len));
		}
		off += consumed;
	}
	return lines;
}
} // namespace

TEST(NextUnit, TooLongWithinOneBufferOfLimitPlusOne) {
	// The listener's buffer is max_line + 1 bytes: it only ever sees a
	// TooLong with no newline at all in the buffer. Then the line after the
	// long one is recovered.
	const size_t max = 64;
	std::string s(max + 1, 'x'); // first buffer-full
	auto lines = read_lines_like_the_listener(s, max);
	ASSERT_EQ(lines.size(), 1u);
	EXPECT_EQ(lines[0], "<too long>");
}

// Regression: TooLong used to consume the whole buffer, the over-long line's
// newline and the lines after it included; it consumes only the bytes proven
// to belong to the long line.
TEST(NextUnit, TooLongDoesNotSwallowTheNextLine) {
	const size_t max = 64;
	std::string s = std::string(max + 10, 'x') + "\n{\"good\":1}\n{\"also\":2}\n";
	auto lines = read_lines_like_the_listener(s, max);
	ASSERT_EQ(lines.size(), 3u);
	EXPECT_EQ(lines[0], "<too long>");
	EXPECT_EQ(lines[1], "{\"good\":1}");
	EXPECT_EQ(lines[2], "{\"also\":2}");
	// The same contract, stated on next_unit alone.
	size_t len = 0, consumed = 0;
	ASSERT_EQ(next_unit(reinterpret_cast<const uint8_t *>(s.data()), s.size(), true, max, len, consumed),
	          Unit::TooLong);
	EXPECT_EQ(s.substr(0, consumed).find('\n'), std::string::npos);
}

TEST(NextUnit, JsonModeDoesNotLookAtContent) {
	// Splitting is by newline only; bytes of any value pass through.
	std::string s("\x00\x01LT\xff\n", 6);
	auto v = split(s, 100);
	ASSERT_EQ(v.size(), 1u);
	EXPECT_EQ(v[0].u, Unit::Line);
	EXPECT_EQ(v[0].text, std::string("\x00\x01LT\xff", 5));
}

TEST(IsJson, FirstByte) {
	const uint8_t brace[] = {'{'};
	const uint8_t lt[] = {'L', 'T'};
	const uint8_t sp[] = {' ', '{'};
	EXPECT_TRUE(is_json(brace, 1));
	EXPECT_FALSE(is_json(brace, 0));
	EXPECT_FALSE(is_json(lt, 2));
	EXPECT_FALSE(is_json(sp, 2));
}
