#include "bench/bench_row.h"

#include "bench/bench_system.h"
#include "engine/generate.h"
#include "engine/loaded_model.h"
#include "engine/run_stats.h"
#include "engine/sampler.h"
#include "engine/session.h"
#include "util/error.h"
#include "util/sys.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

namespace flashmoe::bench {

Summary summarize(const std::vector<double>& v) {
    Summary s;
    if (v.empty()) return s;
    for (double x : v) s.mean += x;
    s.mean /= double(v.size());
    if (v.size() > 1) {
        double ss = 0;
        for (double x : v) ss += (x - s.mean) * (x - s.mean);
        s.sd = std::sqrt(ss / double(v.size() - 1));
    }
    return s;
}

namespace {

void add_io(PhaseIo& p, const ExpertStoreStats& d) {
    p.requests += d.requests;
    p.hits += d.hits;
    p.store_bytes += d.bytes_read;
    p.reads += d.reads;
    p.io_wait_seconds += d.io_wait_seconds;
}

void add_disk(PhaseIo& p, std::optional<uint64_t> before, std::optional<uint64_t> after) {
    if (!before || !after) {
        p.disk_bytes.reset();
        return;
    }
    p.disk_bytes = p.disk_bytes.value_or(0) + (*after - *before);
}

void add_cpu(PhaseIo& p, const CpuTimes& before, const CpuTimes& after) {
    p.cpu_seconds += std::max(0.0, after.cpu_seconds - before.cpu_seconds);
    p.runqueue_seconds += std::max(0.0, after.runqueue_seconds - before.runqueue_seconds);
}

}  // namespace

RowResult run_row(LoadedModel& model, const RowSpec& spec, const RowProgress& progress) {
    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    const ModelConfig& c = model.config();
    if (spec.prompt_tokens < 1) fail(ErrorKind::BadInput, "-p must be at least 1 (prompt tokens)");
    if (spec.gen_tokens < 1) fail(ErrorKind::BadInput, "-n must be at least 1 (generated tokens)");
    if (spec.reps < 1) fail(ErrorKind::BadInput, "-r must be at least 1");
    if (spec.k < 0 || spec.k > c.num_experts) {
        fail(ErrorKind::BadInput, "--k {} is outside 1..{} (the model's experts)", spec.k, c.num_experts);
    }

    RowResult r;
    r.spec = spec;
    r.load_start = load_average_1m();
    r.k_used = spec.k > 0 ? spec.k : c.num_experts_per_tok;
    ExpertStore* store = model.expert_store();
    // Decode steps: the first generated token comes from the prompt's logits; each later one costs a step.
    r.prefill.disk_bytes = 0;
    r.decode.disk_bytes = 0;

    std::mt19937_64 rng(spec.seed);
    std::uniform_int_distribution<int32_t> pick(0, int32_t(c.vocab_size - 1));
    for (int rep = 0; rep < spec.reps; ++rep) {
        std::vector<int32_t> prompt(size_t(spec.prompt_tokens));
        for (auto& id : prompt) id = pick(rng);

        Session session(model.forward());
        // The model card's sampling (temperature 1, top-k 20, top-p 0.95): varied tokens, so that routing
        // is not repetitive, at the sampler's usual cost (no top-k would fully sort the vocabulary).
        SamplingParams sp;
        sp.top_k = 20;
        sp.top_p = 0.95f;
        sp.seed = spec.seed + uint64_t(rep);
        Sampler sampler(sp);
        GenerateOptions go;
        go.max_new_tokens = spec.gen_tokens;
        go.k = r.k_used;  // no stop tokens: always generate all of them

        const std::string head = fmt::format("rep {}/{}", rep + 1, spec.reps);
        if (progress) progress(fmt::format("{}: prefill {} tokens", head, spec.prompt_tokens), true);
        ExpertStoreStats s0 = store ? store->stats() : ExpertStoreStats{}, s1 = s0;
        std::optional<uint64_t> d0 = process_disk_read_bytes(), d1 = d0;
        CpuTimes c0 = process_cpu_times(), c1 = c0;
        auto last_report = clock::now();
        int64_t produced = 0;
        GenerateStats g = generate(session, prompt, go, sampler, [&](int32_t) {
            if (++produced == 1) {
                if (store) s1 = store->stats();
                d1 = process_disk_read_bytes();
                c1 = process_cpu_times();
            }
            auto now = clock::now();
            if (progress && now - last_report > std::chrono::milliseconds(500)) {
                last_report = now;
                progress(fmt::format("{}: decode {}/{} tokens", head, produced, spec.gen_tokens), false);
            }
            return true;
        });
        ExpertStoreStats s2 = store ? store->stats() : ExpertStoreStats{};
        std::optional<uint64_t> d2 = process_disk_read_bytes();
        CpuTimes c2 = process_cpu_times();

        r.ttft_s.push_back(g.prefill_seconds);
        r.prefill_tok_s.push_back(g.prefill_tok_s());
        r.prefill.tokens += uint64_t(g.prompt_tokens);
        r.prefill.seconds += g.prefill_seconds;
        if (store) add_io(r.prefill, s1 - s0);
        add_disk(r.prefill, d0, d1);
        add_cpu(r.prefill, c0, c1);
        if (g.new_tokens > 1) {
            r.decode_tok_s.push_back(g.decode_tok_s());
            r.decode.tokens += uint64_t(g.new_tokens - 1);
            r.decode.seconds += g.decode_seconds;
            if (store) add_io(r.decode, s2 - s1);
            add_disk(r.decode, d1, d2);
            add_cpu(r.decode, c1, c2);
        }
        if (progress) {
            progress(fmt::format("{}: TTFT {:.2f} s, decode {:.2f} tok/s", head, g.prefill_seconds, g.decode_tok_s()),
                     true);
        }
    }
    r.peak_rss = peak_rss_bytes();
    r.load_end = load_average_1m();
    r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    return r;
}

// ---- JSON ---------------------------------------------------------------------------------------

nlohmann::ordered_json to_json(const RowSpec& s) {
    return {{"k", s.k},
            {"cache_bytes", s.cache_bytes},
            {"cache", s.cache_text},
            {"io", s.io},
            {"device", s.device},
            {"prompt_tokens", s.prompt_tokens},
            {"gen_tokens", s.gen_tokens},
            {"reps", s.reps},
            {"seed", s.seed},
            {"start_state", s.start_state}};
}

namespace {

nlohmann::ordered_json summary_json(const std::vector<double>& v) {
    Summary s = summarize(v);
    return {{"mean", s.mean}, {"sd", s.sd}, {"values", v}};
}

nlohmann::ordered_json phase_json(const PhaseIo& p) {
    nlohmann::ordered_json j = {{"tokens", p.tokens},
                                {"seconds", p.seconds},
                                {"expert_requests", p.requests},
                                {"expert_hits", p.hits},
                                {"hit_rate", p.hit_rate()},
                                {"store_bytes_read", p.store_bytes},
                                {"store_reads", p.reads},
                                {"disk_bytes_read", nullptr},
                                {"disk_bytes_per_token", p.disk_bytes_per_token()},
                                {"store_bytes_per_token", p.store_bytes_per_token()},
                                {"io_wait_seconds", p.io_wait_seconds},
                                {"io_wait_share", p.io_wait_share()},
                                {"cpu_seconds", p.cpu_seconds},
                                {"cores_used", p.cores_used()},
                                {"runqueue_wait_seconds", p.runqueue_seconds}};
    if (p.disk_bytes) j["disk_bytes_read"] = *p.disk_bytes;
    return j;
}

std::vector<double> values_of(const nlohmann::json& j, const char* key) {
    return j.at(key).at("values").get<std::vector<double>>();
}

PhaseIo phase_from_json(const nlohmann::json& j) {
    PhaseIo p;
    p.tokens = j.at("tokens").get<uint64_t>();
    p.seconds = j.at("seconds").get<double>();
    p.requests = j.at("expert_requests").get<uint64_t>();
    p.hits = j.at("expert_hits").get<uint64_t>();
    p.store_bytes = j.at("store_bytes_read").get<uint64_t>();
    p.reads = j.at("store_reads").get<uint64_t>();
    p.io_wait_seconds = j.at("io_wait_seconds").get<double>();
    if (!j.at("disk_bytes_read").is_null()) p.disk_bytes = j.at("disk_bytes_read").get<uint64_t>();
    p.cpu_seconds = j.value("cpu_seconds", 0.0);
    p.runqueue_seconds = j.value("runqueue_wait_seconds", 0.0);
    return p;
}

}  // namespace

nlohmann::ordered_json to_json(const RowResult& r) {
    nlohmann::ordered_json j;
    j["spec"] = to_json(r.spec);
    j["status"] = r.status;
    j["k_used"] = r.k_used;
    j["prefill_tok_s"] = summary_json(r.prefill_tok_s);
    j["decode_tok_s"] = summary_json(r.decode_tok_s);
    j["ttft_s"] = summary_json(r.ttft_s);
    j["prefill"] = phase_json(r.prefill);
    j["decode"] = phase_json(r.decode);
    j["peak_rss_bytes"] = r.peak_rss;
    j["peak_vram_bytes"] = r.peak_vram;
    j["page_cache_resident_share_at_start"] = r.cache_resident_share_start;
    j["load_average_start"] = r.load_start;
    j["load_average_end"] = r.load_end;
    j["seconds"] = r.seconds;
    return j;
}

RowResult row_result_from_json(const nlohmann::json& j) {
    try {
        RowResult r;
        const auto& s = j.at("spec");
        r.spec.k = s.at("k").get<int64_t>();
        r.spec.cache_bytes = s.at("cache_bytes").get<uint64_t>();
        r.spec.cache_text = s.at("cache").get<std::string>();
        r.spec.io = s.at("io").get<std::string>();
        r.spec.device = s.at("device").get<std::string>();
        r.spec.prompt_tokens = s.at("prompt_tokens").get<int64_t>();
        r.spec.gen_tokens = s.at("gen_tokens").get<int64_t>();
        r.spec.reps = s.at("reps").get<int>();
        r.spec.seed = s.at("seed").get<uint64_t>();
        r.spec.start_state = s.at("start_state").get<std::string>();
        r.status = j.at("status").get<std::string>();
        r.k_used = j.at("k_used").get<int64_t>();
        r.prefill_tok_s = values_of(j, "prefill_tok_s");
        r.decode_tok_s = values_of(j, "decode_tok_s");
        r.ttft_s = values_of(j, "ttft_s");
        r.prefill = phase_from_json(j.at("prefill"));
        r.decode = phase_from_json(j.at("decode"));
        r.peak_rss = j.at("peak_rss_bytes").get<uint64_t>();
        r.peak_vram = j.at("peak_vram_bytes").get<uint64_t>();
        r.cache_resident_share_start = j.at("page_cache_resident_share_at_start").get<double>();
        r.load_start = j.at("load_average_start").get<double>();
        r.load_end = j.at("load_average_end").get<double>();
        r.seconds = j.at("seconds").get<double>();
        return r;
    } catch (const nlohmann::json::exception& e) {
        fail(ErrorKind::BadInput, "bench row result is malformed: {}", e.what());
    }
}

}  // namespace flashmoe::bench
