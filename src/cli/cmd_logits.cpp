// flashmoe logits MODEL --ids 1,2,3 --out FILE.npy [--k N]: the logits of every prompt position.
#include "cli/command.h"
#include "cli/options.h"
#include "engine/loaded_model.h"
#include "util/error.h"
#include "util/npy.h"

namespace flashmoe::cli {
namespace {

struct LogitsArgs {
    std::string model, ids, out;
    int64_t k = 0;
};

CommandRegistration reg("logits", [](CLI::App& app) -> std::function<int()> {
    auto args = std::make_shared<LogitsArgs>();
    auto* cmd = app.add_subcommand("logits", "write float32 logits [T, vocab] of a prompt to a .npy file");
    cmd->add_option("model", args->model, "model directory")->required();
    cmd->add_option("--ids", args->ids, "prompt token ids, comma-separated")->required();
    cmd->add_option("--out,-o", args->out, "output .npy file")->required();
    cmd->add_option("--k", args->k, "routed experts per token (default: the model's)");
    return [args]() {
        auto ids = parse_ids(args->ids);
        if (args->k < 0) fail(ErrorKind::BadInput, "--k must be positive");
        auto model = LoadedModel::open(args->model);
        auto state = model->forward().new_state();
        ForwardOptions fo;
        fo.k = args->k;
        fo.logits = LogitsFor::All;
        std::vector<float> logits;
        model->forward().forward(*state, ids, fo, &logits);
        write_npy_f32(args->out, {int64_t(ids.size()), model->config().vocab_size}, logits.data());
        return 0;
    };
});

}  // namespace
}  // namespace flashmoe::cli
