// Subcommands register themselves: each cli/cmd_*.cpp defines one static CommandRegistration that
// adds its CLI11 subcommand and a callback. main() runs the chosen one and maps flashmoe::Error
// kinds to exit codes (util/error.h), so commands just throw.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace flashmoe::cli {

// `setup` adds the subcommand to the app and returns the function that runs it (exit code).
using CommandSetup = std::function<std::function<int()>(CLI::App& app)>;

struct CommandRegistration {
    CommandRegistration(std::string name, CommandSetup setup);
};

struct RegisteredCommand {
    std::string name;
    CommandSetup setup;
};
std::vector<RegisteredCommand>& registered_commands();

}  // namespace flashmoe::cli
