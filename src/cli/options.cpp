#include "cli/options.h"

#include "util/error.h"

#include <charconv>
#include <random>

namespace flashmoe::cli {

std::vector<int32_t> parse_ids(const std::string& text) {
    std::vector<int32_t> ids;
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = text.find(',', start);
        if (end == std::string::npos) end = text.size();
        std::string item = text.substr(start, end - start);
        while (!item.empty() && item.front() == ' ') item.erase(item.begin());
        while (!item.empty() && item.back() == ' ') item.pop_back();
        int32_t v = 0;
        auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
        if (item.empty() || ec != std::errc() || ptr != item.data() + item.size() || v < 0) {
            fail(ErrorKind::BadInput, "--ids: '{}' is not a token id (expected comma-separated non-negative integers)",
                 item);
        }
        ids.push_back(v);
        start = end + 1;
    }
    return ids;
}

void add_sampling_flags(CLI::App* app, SamplingFlags& f) {
    app->add_option("--temp", f.temperature, "sampling temperature (0 = greedy; default: the model's)");
    app->add_option("--top-p", f.top_p, "nucleus sampling mass");
    app->add_option("--top-k", f.top_k, "keep the k most likely tokens (0 = all)");
    app->add_option("--min-p", f.min_p, "drop tokens below min-p times the top probability");
    app->add_option("--seed", f.seed, "random seed (default: random)");
    app->add_option("--repeat-penalty", f.repetition_penalty, "repetition penalty (1 = off)");
    app->add_option("--presence-penalty", f.presence_penalty, "presence penalty");
    app->add_option("--frequency-penalty", f.frequency_penalty, "frequency penalty");
}

SamplingParams resolve_sampling(const SamplingFlags& f, SamplingParams p) {
    if (f.temperature) p.temperature = *f.temperature;
    if (f.top_p) p.top_p = *f.top_p;
    if (f.top_k) p.top_k = *f.top_k;
    if (f.min_p) p.min_p = *f.min_p;
    if (f.repetition_penalty) p.repetition_penalty = *f.repetition_penalty;
    if (f.presence_penalty) p.presence_penalty = *f.presence_penalty;
    if (f.frequency_penalty) p.frequency_penalty = *f.frequency_penalty;
    p.seed = f.seed ? *f.seed : std::random_device{}();
    p.validate();
    return p;
}

}  // namespace flashmoe::cli

#include "cli/chat_terminal.h"
#include "engine/loaded_model.h"
#include "store/convert.h"
#include "kernels/cpu/matmul.h"
#include "store/packed_writer.h"
#include "util/progress.h"
#include "util/sys.h"
#include "util/thread_pool.h"

#include <filesystem>

namespace flashmoe::cli {

void add_model_flags(CLI::App* app, ModelFlags& f) {
    app->add_option("--io", f.io, "expert reads: page-cache (buffered), direct (O_DIRECT) or mmap (mapped in place, no copy)")->capture_default_str();
    app->add_option("--cache", f.cache, "expert cache budget, e.g. 6GiB")->capture_default_str();
    app->add_option("--io-threads", f.io_threads, "parallel expert reads")->capture_default_str();
    app->add_option("--threads,-t", f.threads, "compute threads (0 = all cores)");
    app->add_option("--matmul-act", f.matmul_act,
                    "activations on 4/8-bit weights: auto (int8 on CUDA and where the CPU has AVX-512 VNNI), int8, "
                    "or f32 (exact)")
        ->capture_default_str();
    app->add_option("--quant", f.quant, "experts when converting a snapshot: auto, q4, q8, bf16")->capture_default_str();
    app->add_option("--dense-quant", f.dense_quant, "dense matrices when converting a float snapshot: none, q8, q4")
        ->capture_default_str();
    app->add_flag("--no-convert", f.no_convert, "run a snapshot in place, all weights resident, no packed copy");
    app->add_option("--device", f.device, "cpu, cuda, or auto (cuda when a GPU is present)")->capture_default_str();
    app->add_option("--vram", f.vram, "CUDA: VRAM budget for routed experts (--cache is then the pinned host tier)")
        ->capture_default_str();
}

std::unique_ptr<LoadedModel> open_model(const std::string& path, const ModelFlags& f) {
    if (f.threads < 0) fail(ErrorKind::BadInput, "--threads must not be negative");
    if (f.io_threads < 1 || f.io_threads > 256) fail(ErrorKind::BadInput, "--io-threads must be between 1 and 256");
    if (f.threads > 0) set_default_pool_threads(f.threads);
    if (f.matmul_act != "auto") {
        MatmulActivations act;
        if (!parse_matmul_activations(f.matmul_act, &act))
            fail(ErrorKind::BadInput, "--matmul-act '{}' is not one of auto, int8, f32", f.matmul_act);
        set_matmul_activations(act);
    }
    ExpertStoreOptions options;
    options.mode = parse_io_mode(f.io);
    options.cache_bytes = parse_size(f.cache, "--cache");
    options.io_threads = f.io_threads;
    RunnerOptions runner;
    runner.device = parse_device(f.device);
    runner.vram_bytes = parse_size(f.vram, "--vram");
    if (!std::filesystem::is_directory(path)) fail(ErrorKind::BadInput, "{}: not a model directory", path);
    if (is_packed_model(path) || f.no_convert) {
        LoadingNotice notice(path);
        return LoadedModel::open(path, options, runner);
    }

    std::string packed = packed_cache_path(path, f.quant, f.dense_quant);
    if (!is_packed_model(packed)) {
        std::filesystem::create_directories(std::filesystem::path(packed).parent_path());
        fmt::print(stderr, "converting {} to {} (first use)\n", path, packed);
        ProgressBar bar("convert");
        ConvertOptions co;
        co.quant = f.quant;
        co.dense_quant = f.dense_quant;
        co.overwrite = true;
        co.progress = [&](uint64_t done, uint64_t total) { bar.update(done, total); };
        convert_to_packed(path, packed, co);
        bar.finish();
    }
    LoadingNotice notice(packed);
    return LoadedModel::open(packed, options, runner);
}

}  // namespace flashmoe::cli
