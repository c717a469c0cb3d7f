#include "cli/command.h"
#include "util/error.h"

#include <fmt/core.h>

#include <algorithm>
#include <map>

namespace flashmoe::cli {

std::vector<RegisteredCommand>& registered_commands() {
    static std::vector<RegisteredCommand> commands;
    return commands;
}

CommandRegistration::CommandRegistration(std::string name, CommandSetup setup) {
    registered_commands().push_back({std::move(name), std::move(setup)});
}

}  // namespace flashmoe::cli

int main(int argc, char** argv) {
    using namespace flashmoe;
    CLI::App app{"flashmoe: Mixture-of-Experts inference that streams experts from SSD"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "flashmoe 0.1.0");

    auto commands = cli::registered_commands();
    std::sort(commands.begin(), commands.end(), [](auto& a, auto& b) { return a.name < b.name; });
    std::map<CLI::App*, std::function<int()>> runners;
    for (auto& command : commands) {
        CLI::App* before = app.get_subcommands({}).empty() ? nullptr : app.get_subcommands({}).back();
        auto run = command.setup(app);
        CLI::App* sub = app.get_subcommands({}).back();
        if (sub != before) runners[sub] = std::move(run);
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }
    try {
        for (auto* sub : app.get_subcommands()) {
            auto it = runners.find(sub);
            if (it != runners.end()) return it->second();
        }
        fmt::print(stderr, "flashmoe: no command given (see --help)\n");
        return 2;
    } catch (const Error& e) {
        fmt::print(stderr, "flashmoe: {}: {}\n", error_kind_name(e.kind()), e.what());
        return exit_code_for(e.kind());
    } catch (const std::bad_alloc&) {
        fmt::print(stderr, "flashmoe: out of memory\n");
        return exit_code_for(ErrorKind::OutOfMemory);
    } catch (const std::exception& e) {
        fmt::print(stderr, "flashmoe: internal error: {}\n", e.what());
        return exit_code_for(ErrorKind::Internal);
    }
}
