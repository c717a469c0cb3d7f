// flashmoe convert SRC -o OUT.fmoe [--quant auto|q4|q8|bf16] [--dense-quant none|q8|q4] [--force]
#include "cli/command.h"
#include "store/convert.h"
#include "util/progress.h"

namespace flashmoe::cli {
namespace {

struct ConvertArgs {
    std::string source, out, quant = "auto", dense_quant = "none";
    bool force = false;
};

CommandRegistration reg("convert", [](CLI::App& app) -> std::function<int()> {
    auto a = std::make_shared<ConvertArgs>();
    auto* cmd = app.add_subcommand("convert", "convert an HF or MLX snapshot into a packed model");
    cmd->add_option("source", a->source, "HF (bf16/f16/f32) or MLX affine snapshot directory")->required();
    cmd->add_option("-o,--out", a->out, "output directory (e.g. model.fmoe)")->required();
    cmd->add_option("--quant", a->quant,
                    "experts: auto (MLX: copy bits, float: q4), q4, q8 (MLX affine, group 64) or bf16")
        ->capture_default_str();
    cmd->add_option("--dense-quant", a->dense_quant,
                    "dense matrices of a float snapshot: none (as in the source), q8 or q4 (MLX affine, group 64)")
        ->capture_default_str();
    cmd->add_flag("--force", a->force, "replace an existing output directory");
    return [a]() {
        ProgressBar bar("convert");
        ConvertOptions options;
        options.quant = a->quant;
        options.dense_quant = a->dense_quant;
        options.overwrite = a->force;
        options.progress = [&](uint64_t done, uint64_t total) { bar.update(done, total); };
        convert_to_packed(a->source, a->out, options);
        bar.finish();
        return 0;
    };
});

}  // namespace
}  // namespace flashmoe::cli
