#include "engine/generation_defaults.h"

#include "model/config.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

namespace flashmoe {

GenerationDefaults load_generation_defaults(const std::string& model_dir, const ModelConfig& config,
                                            const Tokenizer* tokenizer) {
    GenerationDefaults d;
    auto add_stop = [&](int64_t id) {
        if (id >= 0 && std::find(d.stop_tokens.begin(), d.stop_tokens.end(), int32_t(id)) == d.stop_tokens.end()) {
            d.stop_tokens.push_back(int32_t(id));
        }
    };
    for (int64_t id : config.eos_token_ids) add_stop(id);

    std::filesystem::path path = std::filesystem::path(model_dir) / "generation_config.json";
    if (std::filesystem::exists(path)) {
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(read_text_file(path.string()));
        } catch (const nlohmann::json::exception& e) {
            fail(ErrorKind::BadModel, "{}: not valid JSON: {}", path.string(), e.what());
        }
        auto number = [&](const char* key, auto& out) {
            if (auto it = j.find(key); it != j.end() && it->is_number()) out = it->get<std::decay_t<decltype(out)>>();
        };
        number("temperature", d.sampling.temperature);
        number("top_p", d.sampling.top_p);
        number("top_k", d.sampling.top_k);
        number("min_p", d.sampling.min_p);
        number("repetition_penalty", d.sampling.repetition_penalty);
        number("presence_penalty", d.sampling.presence_penalty);
        number("max_new_tokens", d.max_new_tokens);
        if (auto it = j.find("do_sample"); it != j.end() && it->is_boolean() && !it->get<bool>()) {
            d.sampling.temperature = 0;
        }
        if (auto it = j.find("eos_token_id"); it != j.end()) {
            if (it->is_number_integer()) add_stop(it->get<int64_t>());
            else if (it->is_array())
                for (auto& e : *it)
                    if (e.is_number_integer()) add_stop(e.get<int64_t>());
        }
        try {
            d.sampling.validate();
        } catch (const Error& e) {
            fail(ErrorKind::BadModel, "{}: {}", path.string(), e.what());
        }
    }
    if (tokenizer) {
        for (const char* t : {"<|im_end|>", "<|endoftext|>"}) {
            if (auto id = tokenizer->added_token_id(t)) add_stop(*id);
        }
    }
    return d;
}

}  // namespace flashmoe
