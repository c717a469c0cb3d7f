// flashmoe perplexity MODEL (--ids-file IDS.json | -f TEXT) [--window 256] [--k N]
#include "cli/command.h"
#include "cli/options.h"
#include "engine/loaded_model.h"
#include "engine/perplexity.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

namespace flashmoe::cli {
namespace {

struct PerplexityArgs {
    std::string model, ids_file, text_file;
    int64_t window = 256, k = 0;
    ModelFlags model_flags;
};

CommandRegistration reg("perplexity", [](CLI::App& app) -> std::function<int()> {
    auto a = std::make_shared<PerplexityArgs>();
    auto* cmd = app.add_subcommand("perplexity", "held-out perplexity over fixed windows of a text");
    cmd->add_option("model", a->model, "packed model, or HF/MLX snapshot directory")->required();
    auto* ids = cmd->add_option("--ids-file", a->ids_file, "JSON list of token ids");
    auto* text = cmd->add_option("-f,--file", a->text_file, "text file, tokenized with the model's tokenizer");
    ids->excludes(text);
    cmd->add_option("--window", a->window, "tokens per window")->capture_default_str();
    cmd->add_option("--k", a->k, "routed experts per token (default: the model's)");
    add_model_flags(cmd, a->model_flags);
    return [a]() {
        if (a->ids_file.empty() && a->text_file.empty()) fail(ErrorKind::BadInput, "give --ids-file or -f");
        if (a->k < 0) fail(ErrorKind::BadInput, "--k must be positive");
        auto model = open_model(a->model, a->model_flags);
        std::vector<int32_t> tokens;
        if (!a->ids_file.empty()) {
            try {
                tokens = nlohmann::json::parse(read_text_file(a->ids_file)).get<std::vector<int32_t>>();
            } catch (const nlohmann::json::exception& e) {
                fail(ErrorKind::BadInput, "{}: expected a JSON list of token ids: {}", a->ids_file, e.what());
            }
        } else {
            tokens = model->tokenizer().encode(read_text_file(a->text_file));
        }
        const bool show = ::isatty(STDERR_FILENO) != 0;  // no carriage-return noise in logs
        auto r = perplexity(model->forward(), tokens, a->window, a->k, [show](int64_t done, int64_t total) {
            if (show) fmt::print(stderr, "\rwindow {}/{}", done, total);
        });
        if (show) fmt::print(stderr, "\n");
        fmt::print("windows {}  predictions {}  NLL {:.5f}  perplexity {:.3f}\n", r.windows, r.predictions, r.nll,
                   r.perplexity);
        return 0;
    };
});

}  // namespace
}  // namespace flashmoe::cli
