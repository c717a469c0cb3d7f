// `flashmoe tokenize MODEL TEXT [--ids-only]`: shows how a text tokenizes. MODEL is a model directory
// holding tokenizer.json (or the tokenizer.json itself). Prints one "id<TAB>piece" line per token,
// the piece as raw bytes with control and non-UTF-8 bytes escaped, or with --ids-only one line of
// comma-separated ids.
#include "cli/command.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <string>

namespace flashmoe::cli {
namespace {

// Token bytes for a terminal: printable UTF-8 as is; control bytes, backslash and bytes that are not
// (complete) UTF-8 as C-style escapes, so every piece is visible and unambiguous.
std::string escape_piece(std::string_view bytes) {
    std::string out;
    for (size_t i = 0; i < bytes.size();) {
        const auto b = static_cast<unsigned char>(bytes[i]);
        if (b < 0x80) {
            switch (b) {
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                case '\\': out += "\\\\"; break;
                default:
                    if (b < 0x20 || b == 0x7F) {
                        out += fmt::format("\\x{:02x}", b);
                    } else {
                        out.push_back(char(b));
                    }
            }
            ++i;
            continue;
        }
        const text::Utf8Step step = text::utf8_step(bytes.substr(i));
        if (step.kind == text::Utf8Step::Kind::Valid && !(step.code_point >= 0x80 && step.code_point < 0xA0)) {
            out.append(bytes.substr(i, step.length));
            i += step.length;
        } else {
            out += fmt::format("\\x{:02x}", b);
            ++i;
        }
    }
    return out;
}

const CommandRegistration registration{"tokenize", [](CLI::App& app) -> std::function<int()> {
    auto* cmd = app.add_subcommand("tokenize", "Show the token ids and pieces of a text");
    auto model = std::make_shared<std::string>();
    auto text = std::make_shared<std::string>();
    auto ids_only = std::make_shared<bool>(false);
    cmd->add_option("model", *model, "Model directory containing tokenizer.json")->required();
    cmd->add_option("text", *text, "Text to tokenize")->required();
    cmd->add_flag("--ids-only", *ids_only, "Print only the comma-separated ids");
    return [model, text, ids_only]() {
        const Tokenizer tokenizer = Tokenizer::load(*model);
        const std::vector<TokenId> ids = tokenizer.encode(*text);
        if (*ids_only) {
            fmt::print("{}\n", fmt::join(ids, ","));
            return 0;
        }
        std::string bytes;
        for (TokenId id : ids) {
            bytes.clear();
            tokenizer.append_token_bytes(id, bytes);
            fmt::print("{}\t{}\n", id, escape_piece(bytes));
        }
        return 0;
    };
}};

}  // namespace
}  // namespace flashmoe::cli
