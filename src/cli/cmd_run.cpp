// flashmoe run MODEL --ids 1,2,3 -n N: generate from a prompt of token ids.
#include "cli/command.h"
#include "cli/options.h"
#include "engine/generate.h"
#include "engine/loaded_model.h"
#include "engine/run_stats.h"
#include "util/error.h"
#include "util/sys.h"

#include <fmt/format.h>

#include <cstdio>

namespace flashmoe::cli {
namespace {

struct RunArgs {
    std::string model, ids;
    int64_t n = 32;
    int64_t k = 0;
    bool stats = false;
    SamplingParams sampling;
    ModelFlags model_flags;
};

CommandRegistration reg("run", [](CLI::App& app) -> std::function<int()> {
    auto a = std::make_shared<RunArgs>();
    auto* cmd = app.add_subcommand("run", "generate a continuation of a prompt");
    cmd->add_option("model", a->model, "packed model, or HF/MLX snapshot directory")->required();
    cmd->add_option("--ids", a->ids, "prompt token ids, comma-separated")->required();
    cmd->add_option("-n,--max-tokens", a->n, "tokens to generate")->capture_default_str();
    cmd->add_option("--k", a->k, "routed experts per token (default: the model's)");
    cmd->add_flag("--stats", a->stats, "print speed, I/O and memory figures at the end (stderr)");
    add_sampling_flags(cmd, a->sampling);
    add_model_flags(cmd, a->model_flags);
    return [a]() {
        auto ids = parse_ids(a->ids);
        if (a->n < 0) fail(ErrorKind::BadInput, "-n must not be negative");
        if (a->k < 0) fail(ErrorKind::BadInput, "--k must be positive");
        a->sampling.validate();
        auto model = open_model(a->model, a->model_flags);
        Session session(model->forward());
        Sampler sampler(a->sampling);
        GenerateOptions go;
        go.max_new_tokens = a->n;
        go.k = a->k;
        for (int64_t id : model->config().eos_token_ids) go.stop_tokens.push_back(int32_t(id));

        ExpertStore* store = model->expert_store();
        ExpertStoreStats at_start = store ? store->stats() : ExpertStoreStats{}, after_prompt = at_start;
        bool first = true;
        RunStats rs;
        rs.generation = generate(session, ids, go, sampler, [&](int32_t token) {
            if (first && store) after_prompt = store->stats();
            fmt::print("{}{}", first ? "" : ",", token);
            std::fflush(stdout);
            first = false;
            return true;
        });
        fmt::print("\n");
        std::fflush(stdout);
        if (a->stats) {
            rs.streamed = store != nullptr;
            if (store) {
                rs.prefill_io = after_prompt - at_start;
                rs.decode_io = store->stats() - after_prompt;
            }
            rs.peak_rss = peak_rss_bytes();
            fmt::print(stderr, "{}", rs.describe());
        }
        return 0;
    };
});

}  // namespace
}  // namespace flashmoe::cli
