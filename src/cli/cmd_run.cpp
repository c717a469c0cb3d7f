// flashmoe run MODEL --ids 1,2,3 -n N: generate from a prompt of token ids.
#include "cli/command.h"
#include "cli/options.h"
#include "engine/generate.h"
#include "engine/loaded_model.h"
#include "util/error.h"

#include <fmt/format.h>

#include <cstdio>

namespace flashmoe::cli {
namespace {

struct RunArgs {
    std::string model, ids;
    int64_t n = 32;
    int64_t k = 0;
    bool print_ids = false;
    bool stats = false;
    SamplingParams sampling;
};

CommandRegistration reg("run", [](CLI::App& app) -> std::function<int()> {
    auto a = std::make_shared<RunArgs>();
    auto* cmd = app.add_subcommand("run", "generate a continuation of a prompt");
    cmd->add_option("model", a->model, "model directory")->required();
    cmd->add_option("--ids", a->ids, "prompt token ids, comma-separated")->required();
    cmd->add_option("-n,--max-tokens", a->n, "tokens to generate")->capture_default_str();
    cmd->add_option("--k", a->k, "routed experts per token (default: the model's)");
    cmd->add_flag("--print-ids", a->print_ids, "print generated token ids");
    cmd->add_flag("--stats", a->stats, "print timing figures at the end (stderr)");
    add_sampling_flags(cmd, a->sampling);
    return [a]() {
        auto ids = parse_ids(a->ids);
        if (a->n < 0) fail(ErrorKind::BadInput, "-n must not be negative");
        if (a->k < 0) fail(ErrorKind::BadInput, "--k must be positive");
        a->sampling.validate();
        auto model = LoadedModel::open(a->model);
        auto state = model->forward().new_state();
        Sampler sampler(a->sampling);
        GenerateOptions go;
        go.max_new_tokens = a->n;
        go.k = a->k;
        for (int64_t id : model->config().eos_token_ids) go.stop_tokens.push_back(int32_t(id));
        bool first = true;
        auto stats = generate(model->forward(), state, ids, go, sampler, [&](int32_t token) {
            fmt::print("{}{}", first ? "" : ",", token);
            std::fflush(stdout);
            first = false;
            return true;
        });
        fmt::print("\n");
        if (a->stats) {
            fmt::print(stderr, "prompt: {} tokens in {:.3f} s ({:.2f} tok/s); generated: {} tokens, decode {:.2f} tok/s\n",
                       stats.prompt_tokens, stats.prefill_seconds, stats.prefill_tok_s(), stats.new_tokens,
                       stats.decode_tok_s());
        }
        return 0;
    };
});

}  // namespace
}  // namespace flashmoe::cli
