#include "cli/chat_conversation.h"

#include "util/error.h"
#include "util/mapped_file.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace flashmoe::cli {

nlohmann::ordered_json Conversation::messages() const {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    if (!system.empty()) out.push_back({{"role", "system"}, {"content", system}});
    for (const auto& m : turns) out.push_back(m);
    return out;
}

size_t Conversation::user_turns() const {
    size_t n = 0;
    for (const auto& m : turns) n += m.value("role", "") == "user";
    return n;
}

void save_conversation(const Conversation& conversation, const std::string& path) {
    if (path.empty()) fail(ErrorKind::BadInput, "/save needs a file name");
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) fail(ErrorKind::Io, "{}: cannot write", tmp);
        f << conversation.messages().dump(2) << '\n';
        f.close();
        if (!f) {
            std::remove(tmp.c_str());
            fail(ErrorKind::Io, "{}: write failed", tmp);
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::remove(tmp.c_str());
        fail(ErrorKind::Io, "{}: cannot rename into place: {}", path, ec.message());
    }
}

Conversation load_conversation(const std::string& path) {
    if (path.empty()) fail(ErrorKind::BadInput, "/load needs a file name");
    std::string text = read_text_file(path);
    nlohmann::ordered_json doc = nlohmann::ordered_json::parse(text, nullptr, false);
    if (doc.is_discarded()) fail(ErrorKind::BadInput, "{}: not valid JSON", path);
    if (doc.is_object() && doc.contains("messages")) doc = doc["messages"];
    if (!doc.is_array()) fail(ErrorKind::BadInput, "{}: expected a JSON array of messages", path);

    Conversation c;
    for (size_t i = 0; i < doc.size(); ++i) {
        const auto& m = doc[i];
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
            fail(ErrorKind::BadInput, "{}: message {} has no \"role\" string", path, i);
        }
        const std::string role = m["role"];
        if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
            fail(ErrorKind::BadInput, "{}: message {} has role '{}' (expected system, user, assistant or tool)", path,
                 i, role);
        }
        if (m.contains("content") && !m["content"].is_string() && !m["content"].is_null()) {
            fail(ErrorKind::BadInput, "{}: message {} content must be a string", path, i);
        }
        if (role == "system" && i == 0) {
            c.system = m.value("content", "");
            continue;
        }
        if (role == "system") fail(ErrorKind::BadInput, "{}: message {}: a system message must come first", path, i);
        c.turns.push_back(m);
    }
    return c;
}

}  // namespace flashmoe::cli
