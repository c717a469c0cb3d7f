// flashmoe info MODEL: the config, tensor count, dense and expert bytes, quantisation.
#include "cli/command.h"
#include "engine/loaded_model.h"
#include "util/progress.h"

#include <fmt/format.h>

namespace flashmoe::cli {
namespace {

std::string human_bytes(size_t bytes) { return fmt::format("{} ({} bytes)", format_bytes(bytes), bytes); }

CommandRegistration reg("info", [](CLI::App& app) -> std::function<int()> {
    auto model_path = std::make_shared<std::string>();
    auto* cmd = app.add_subcommand("info", "print a model's configuration, size and quantisation");
    cmd->add_option("model", *model_path, "model directory")->required();
    return [model_path]() {
        auto model = LoadedModel::open(*model_path);
        const ModelConfig& c = model->config();
        WeightSummary s = model->summary();
        int64_t attn = 0;
        for (auto k : c.layer_kinds) attn += k == LayerKind::Attention;
        fmt::print("model:            {}\n", model->path());
        fmt::print("layout:           {}\n", model->layout_description());
        fmt::print("layers:           {} ({} Gated DeltaNet, {} gated attention)\n", c.num_layers, c.num_layers - attn, attn);
        fmt::print("hidden size:      {}\n", c.hidden_size);
        fmt::print("vocabulary:       {}\n", c.vocab_size);
        fmt::print("attention:        {} q heads, {} kv heads, head dim {}, rotary dim {}, rope theta {}\n",
                   c.num_heads, c.num_kv_heads, c.head_dim, c.rotary_dim, c.rope_theta);
        fmt::print("deltanet:         {} v heads, {} qk heads, head dims {}/{}, conv kernel {}\n",
                   c.linear_num_value_heads, c.linear_num_key_heads, c.linear_key_head_dim, c.linear_value_head_dim,
                   c.linear_conv_kernel);
        fmt::print("experts:          {} routed (top {}), intermediate {}; shared intermediate {}\n", c.num_experts,
                   c.num_experts_per_tok, c.moe_intermediate_size, c.shared_expert_intermediate_size);
        fmt::print("tensors:          {}\n", s.tensor_count);
        fmt::print("dense weights:    {}\n", human_bytes(s.dense_bytes));
        fmt::print("expert weights:   {}\n", human_bytes(s.expert_bytes));
        if (s.ignored_bytes) fmt::print("ignored:          {} (vision, mtp)\n", human_bytes(s.ignored_bytes));
        fmt::print("quantisation:     {}\n", s.quantization);
        return 0;
    };
});

}  // namespace
}  // namespace flashmoe::cli
