// flashmoe bench: runs end to end on a tiny synthetic model (rows in child processes), writes a JSON
// document with every promised field and a well-formed SVG plot, and refuses bad flags. No timing
// assertions: only that the figures exist and are consistent with each other.
#include "bench/bench_report.h"
#include "bench/bench_row.h"
#include "bench/bench_system.h"
#include "store/synth.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>

namespace fs = std::filesystem;
using namespace flashmoe;
using namespace flashmoe::bench;

namespace {

struct Fixture {
    fs::path dir, model;
    Fixture() {
        dir = fs::temp_directory_path() / ("flashmoe_bench_" + std::to_string(::getpid()));
        fs::create_directories(dir);
        model = dir / "tiny.fmoe";
        SynthOptions o;
        o.preset = "tiny";
        o.seed = 3;
        o.out_dir = model.string();
        write_synth_model(o);
    }
    ~Fixture() { fs::remove_all(dir); }
};

Fixture& fixture() {
    static Fixture f;
    return f;
}

int run(const std::string& args, std::string* output = nullptr) {
    const fs::path log = fixture().dir / "out.txt";
    std::string cmd = std::string(FLASHMOE_BINARY) + " " + args + " >" + log.string() + " 2>&1";
    int rc = std::system(cmd.c_str());
    std::ifstream in(log);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (output) *output = text;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string read(const fs::path& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A small well-formedness check: one root <svg>, every tag closed in order, attributes quoted.
void expect_well_formed_svg(const std::string& svg) {
    ASSERT_EQ(svg.rfind("<?xml", 0), 0u);
    std::vector<std::string> stack;
    size_t roots = 0;
    for (size_t i = svg.find('<', 1); i != std::string::npos; i = svg.find('<', i + 1)) {
        const size_t end = svg.find('>', i);
        ASSERT_NE(end, std::string::npos) << "unterminated tag at " << i;
        std::string tag = svg.substr(i + 1, end - i - 1);
        ASSERT_EQ(std::count(tag.begin(), tag.end(), '"') % 2, 0) << tag;
        if (tag[0] == '/') {
            ASSERT_FALSE(stack.empty()) << tag;
            EXPECT_EQ(stack.back(), tag.substr(1)) << "mismatched close";
            stack.pop_back();
        } else if (tag.back() != '/') {
            std::string name = tag.substr(0, tag.find_first_of(" \n"));
            if (stack.empty()) ++roots;
            stack.push_back(name);
        }
        std::string text = svg.substr(end + 1, svg.find('<', end) - end - 1);
        EXPECT_EQ(text.find('&') == std::string::npos || std::regex_search(text, std::regex("&(amp|lt|gt|quot);")), true)
            << text;
    }
    EXPECT_TRUE(stack.empty());
    EXPECT_EQ(roots, 1u);
    EXPECT_NE(svg.find("<svg"), std::string::npos);
}

}  // namespace

TEST(Bench, RunsRowsAndWritesJsonAndSvg) {
    const fs::path json = fixture().dir / "bench.json", svg = fixture().dir / "bench.svg";
    std::string out;
    int rc = run(fmt::format("bench {} -p 6 -n 4 -r 2 --k 2,4 --cache 1MiB,4MiB --io page-cache,direct "
                             "--device cpu,cuda --cold --probe-seconds 0.2 --json {} --plot {}",
                             fixture().model.string(), json.string(), svg.string()),
                 &out);
    ASSERT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("| K | cache |"), std::string::npos) << out;
    EXPECT_NE(out.find("disk:"), std::string::npos);
    EXPECT_NE(out.find("no CUDA device"), std::string::npos);  // this machine has no GPU

    auto j = nlohmann::json::parse(read(json));
    EXPECT_GT(j.at("disk").at("bytes_per_second").get<double>(), 0);
    EXPECT_FALSE(j.at("machine").at("date_utc").get<std::string>().empty());
    EXPECT_GT(j.at("machine").at("cpus").get<int>(), 0);
    EXPECT_GT(j.at("machine").at("ram_bytes").get<uint64_t>(), 0u);
    const auto& rows = j.at("rows");
    ASSERT_EQ(rows.size(), 2u * 2 * 2 * 2);
    int ok = 0, skipped = 0;
    for (const auto& r : rows) {
        const std::string status = r.at("status");
        if (r.at("spec").at("device") == "cuda") {
            EXPECT_EQ(status.rfind("skipped", 0), 0u) << status;
            ++skipped;
            continue;
        }
        ASSERT_EQ(status, "ok");
        ++ok;
        EXPECT_EQ(r.at("k_used").get<int64_t>(), r.at("spec").at("k").get<int64_t>());
        EXPECT_EQ(r.at("decode_tok_s").at("values").size(), 2u);
        EXPECT_EQ(r.at("ttft_s").at("values").size(), 2u);
        EXPECT_GT(r.at("decode_tok_s").at("mean").get<double>(), 0);
        EXPECT_GE(r.at("decode_tok_s").at("sd").get<double>(), 0);
        EXPECT_GT(r.at("prefill_tok_s").at("mean").get<double>(), 0);
        EXPECT_GT(r.at("peak_rss_bytes").get<uint64_t>(), 0u);
        EXPECT_EQ(r.at("spec").at("start_state").get<std::string>().rfind("cold", 0), 0u);
        const auto& pre = r.at("prefill");
        const auto& dec = r.at("decode");
        EXPECT_EQ(pre.at("tokens").get<uint64_t>(), 2u * 6);
        EXPECT_EQ(dec.at("tokens").get<uint64_t>(), 2u * 3);
        const uint64_t k = r.at("k_used").get<uint64_t>();
        EXPECT_EQ(dec.at("expert_requests").get<uint64_t>() % 4, 0u);  // 4 layers
        EXPECT_LE(dec.at("expert_requests").get<uint64_t>(), 2u * 3 * 4 * k);
        for (const char* f : {"hit_rate", "io_wait_share"}) {
            EXPECT_GE(dec.at(f).get<double>(), 0) << f;
            EXPECT_LE(dec.at(f).get<double>(), 1) << f;
        }
        EXPECT_TRUE(dec.contains("disk_bytes_per_token"));
        EXPECT_GT(dec.at("cpu_seconds").get<double>(), 0);
        EXPECT_GE(dec.at("runqueue_wait_seconds").get<double>(), 0);
        EXPECT_TRUE(r.contains("limit_tok_s"));
        EXPECT_TRUE(r.contains("fraction_of_limit"));
        // The first prefill of a cold row reads every expert it uses.
        EXPECT_GT(pre.at("store_bytes_read").get<uint64_t>(), 0u);
    }
    EXPECT_EQ(ok, 8);
    EXPECT_EQ(skipped, 8);
    expect_well_formed_svg(read(svg));
}

TEST(Bench, RejectsBadFlags) {
    const std::string m = fixture().model.string();
    EXPECT_EQ(run("bench " + m + " --io sideways --no-probe"), 2);
    EXPECT_EQ(run("bench " + m + " --k 2,x --no-probe"), 2);
    EXPECT_EQ(run("bench " + m + " --k 99 --no-probe"), 2);
    EXPECT_EQ(run("bench " + m + " --cache 1XB --no-probe"), 2);
    EXPECT_EQ(run("bench " + m + " --device tpu --no-probe"), 2);
    EXPECT_EQ(run("bench " + m + " --cold --warm --no-probe"), 2);
    EXPECT_EQ(run("bench " + m + " -n 0 --no-probe"), 2);
    std::string out;
    EXPECT_EQ(run("bench " + m + " -p 2 -n 2 -r 1 --no-probe --plot x.pdf", &out), 2) << out;
}

TEST(Bench, SummaryAndRowJsonRoundTrip) {
    Summary s = summarize({1, 2, 3});
    EXPECT_DOUBLE_EQ(s.mean, 2);
    EXPECT_DOUBLE_EQ(s.sd, 1);
    EXPECT_DOUBLE_EQ(summarize({5}).sd, 0);

    RowResult r;
    r.spec.k = 4;
    r.spec.cache_text = "2GiB";
    r.spec.cache_bytes = uint64_t(2) << 30;
    r.decode_tok_s = {3, 4};
    r.ttft_s = {1.5, 1.25};
    r.prefill_tok_s = {10, 12};
    r.decode.tokens = 10;
    r.decode.store_bytes = 1000;
    r.decode.disk_bytes = 500;
    r.peak_rss = 123;
    RowResult back = row_result_from_json(nlohmann::json::parse(to_json(r).dump()));
    EXPECT_EQ(back.decode_tok_s, r.decode_tok_s);
    EXPECT_EQ(back.spec.cache_bytes, r.spec.cache_bytes);
    ASSERT_TRUE(back.decode.disk_bytes.has_value());
    EXPECT_EQ(*back.decode.disk_bytes, 500u);
    EXPECT_DOUBLE_EQ(back.decode.disk_bytes_per_token(), 50);

    BenchReport report;
    report.rows = {back};
    DiskProbeResult d;
    d.bytes_per_second = 1000;
    report.disk = d;
    EXPECT_DOUBLE_EQ(limit_tok_s(report, back), 20);
    EXPECT_DOUBLE_EQ(fraction_of_limit(report, back), 3.5 / 20);
    expect_well_formed_svg(svg_plot(report));
    expect_well_formed_svg(svg_plot(BenchReport{}));
}

TEST(Bench, PageCacheControl) {
    const std::string m = fixture().model.string();
    PageCacheResult w = preload_page_cache(m);
    EXPECT_EQ(w.method, "preload");
    double share = page_cache_resident_share(m);
    EXPECT_GT(share, 0.9);
    PageCacheResult d = drop_page_cache(m, false);
    EXPECT_EQ(d.method, "fadvise");
    EXPECT_LT(page_cache_resident_share(m), share);
}
